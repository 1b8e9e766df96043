/** A horizontal bar chart in plain SVG: one labelled bar per row, values written out. */
export interface Bar {
  label: string;
  value: number | null;
  text: string;
}

export function BarChart({ title, bars }: { title: string; bars: Bar[] }) {
  const max = Math.max(1, ...bars.map((b) => b.value ?? 0));
  const rowHeight = 28;
  const labelWidth = 140;
  const width = 520;
  const barSpace = width - labelWidth - 90;
  return (
    <figure className="chart card">
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${width} ${bars.length * rowHeight + 8}`} role="img" aria-label={title} preserveAspectRatio="xMinYMin meet">
        {bars.map((b, i) => {
          const y = i * rowHeight + 4;
          const w = b.value ? Math.max(2, (b.value / max) * barSpace) : 0;
          return (
            <g key={b.label + i}>
              <text x={labelWidth - 8} y={y + 17} textAnchor="end" className="chart-label">
                {b.label.length > 18 ? `${b.label.slice(0, 17)}…` : b.label}
              </text>
              <rect x={labelWidth} y={y + 4} width={w} height={rowHeight - 10} rx={3} className="chart-bar" />
              <text x={labelWidth + w + 6} y={y + 17} className="chart-value">
                {b.text}
              </text>
            </g>
          );
        })}
      </svg>
    </figure>
  );
}
