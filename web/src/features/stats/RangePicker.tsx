import { useI18n } from "../../lib/i18n";
import { RANGES, type RangeDays } from "./range";

export function RangePicker({ value, onChange }: { value: RangeDays; onChange: (days: RangeDays) => void }) {
  const { t } = useI18n();
  return (
    <label>
      {t("stats.range")}
      <select value={value} onChange={(e) => onChange(Number(e.target.value) as RangeDays)}>
        {RANGES.map((d) => (
          <option key={d} value={d}>
            {t("stats.lastDays", { n: d })}
          </option>
        ))}
      </select>
    </label>
  );
}
