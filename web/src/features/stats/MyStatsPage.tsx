import { useState } from "react";
import { useAuth } from "../../lib/auth";
import { useI18n } from "../../lib/i18n";
import { formatDuration } from "../../lib/time";
import { EmptyState, ErrorState, Loading, PageHeader } from "../../components/states";
import type { ManagerStats } from "../../api/types";
import { useManagerStats } from "./api";
import { RangePicker } from "./RangePicker";
import type { RangeDays } from "./range";

export default function MyStatsPage() {
  const { t } = useI18n();
  const { user } = useAuth();
  const [days, setDays] = useState<RangeDays>(30);
  const stats = useManagerStats(days);
  const mine = stats.data?.items.find((row) => row.user_id === user?.id);

  return (
    <>
      <PageHeader title={t("stats.mine")}>
        <RangePicker value={days} onChange={setDays} />
      </PageHeader>
      {stats.isPending ? (
        <Loading />
      ) : stats.isError ? (
        <ErrorState error={stats.error} onRetry={() => void stats.refetch()} />
      ) : !mine ? (
        <EmptyState title={t("stats.noneMine")} hint={t("stats.noneMineHint")} />
      ) : (
        <StatCards row={mine} />
      )}
    </>
  );
}

export function StatCards({ row }: { row: ManagerStats }) {
  const { t } = useI18n();
  const cards: [string, string][] = [
    [t("stats.replies"), String(row.replies)],
    [t("stats.medianResponse"), formatDuration(row.median_response_seconds, t)],
    [t("stats.p90Response"), formatDuration(row.p90_response_seconds, t)],
    [t("stats.medianFirst"), formatDuration(row.median_first_response_seconds, t)],
    [t("stats.open"), String(row.open_deals)],
    [t("stats.won"), String(row.deals_won)],
    [t("stats.lost"), String(row.deals_lost)],
    [t("stats.aiScore"), row.ai_score_average === null ? "—" : `${row.ai_score_average.toFixed(1)} (${row.ai_scored_deals})`],
  ];
  return (
    <div className="stat-cards">
      {cards.map(([label, value]) => (
        <div key={label} className="card stat">
          <span className="stat-value">{value}</span>
          <span className="stat-label">{label}</span>
        </div>
      ))}
    </div>
  );
}
