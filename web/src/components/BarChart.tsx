/**
 * A horizontal bar chart: one row per item with its label, an SVG bar scaled to the
 * largest value, and the value written out. Rows are HTML so text keeps its size on any
 * screen; bars are SVG so they stay crisp.
 */
export interface Bar {
  label: string;
  value: number | null;
  text: string;
}

export function BarChart({ title, bars }: { title: string; bars: Bar[] }) {
  const max = Math.max(1e-9, ...bars.map((b) => b.value ?? 0));
  return (
    <figure className="chart card">
      <figcaption>{title}</figcaption>
      <ul className="chart-rows">
        {bars.map((b, i) => {
          const pct = b.value ? Math.max(1, (b.value / max) * 100) : 0;
          return (
            <li key={`${b.label}-${i}`} className="chart-row">
              <span className="chart-label" title={b.label}>
                {b.label}
              </span>
              <svg className="chart-track" width="100%" height="16" aria-hidden="true">
                <rect x="0" y="0" width={`${pct}%`} height="16" rx="3" className="chart-bar" />
              </svg>
              <span className="chart-value">{b.text}</span>
            </li>
          );
        })}
      </ul>
    </figure>
  );
}
