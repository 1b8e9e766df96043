import { useState } from "react";
import { useI18n } from "../../lib/i18n";
import { formatDuration } from "../../lib/time";
import { EmptyState, ErrorState, Loading, PageHeader } from "../../components/states";
import { BarChart } from "../../components/BarChart";
import { useFunnel, useManagerStats } from "./api";
import { RangePicker } from "./RangePicker";
import type { RangeDays } from "./range";

export default function TeamStatsPage() {
  const { t } = useI18n();
  const [days, setDays] = useState<RangeDays>(30);
  const stats = useManagerStats(days);
  const funnel = useFunnel(days);

  return (
    <>
      <PageHeader title={t("stats.team")}>
        <RangePicker value={days} onChange={setDays} />
      </PageHeader>
      {stats.isPending ? (
        <Loading />
      ) : stats.isError ? (
        <ErrorState error={stats.error} onRetry={() => void stats.refetch()} />
      ) : stats.data.items.length === 0 ? (
        <EmptyState title={t("stats.noneTeam")} hint={t("stats.noneTeamHint")} />
      ) : (
        <>
          <div className="charts">
            <BarChart
              title={t("stats.medianResponse")}
              bars={stats.data.items.map((r) => ({ label: r.name, value: r.median_response_seconds, text: formatDuration(r.median_response_seconds, t) }))}
            />
            <BarChart title={t("stats.replies")} bars={stats.data.items.map((r) => ({ label: r.name, value: r.replies, text: String(r.replies) }))} />
            <BarChart
              title={t("stats.aiScore")}
              bars={stats.data.items.map((r) => ({ label: r.name, value: r.ai_score_average, text: r.ai_score_average === null ? "—" : r.ai_score_average.toFixed(1) }))}
            />
          </div>
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">{t("stats.manager")}</th>
                  <th scope="col">{t("stats.replies")}</th>
                  <th scope="col">{t("stats.medianResponse")}</th>
                  <th scope="col">{t("stats.p90Response")}</th>
                  <th scope="col">{t("stats.medianFirst")}</th>
                  <th scope="col">{t("stats.won")}</th>
                  <th scope="col">{t("stats.lost")}</th>
                  <th scope="col">{t("stats.open")}</th>
                  <th scope="col">{t("stats.aiScore")}</th>
                </tr>
              </thead>
              <tbody>
                {stats.data.items.map((r) => (
                  <tr key={`${r.user_id ?? "meta"}-${r.name}`}>
                    <th scope="row">{r.name}</th>
                    <td>{r.replies}</td>
                    <td>{formatDuration(r.median_response_seconds, t)}</td>
                    <td>{formatDuration(r.p90_response_seconds, t)}</td>
                    <td>{formatDuration(r.median_first_response_seconds, t)}</td>
                    <td>{r.deals_won}</td>
                    <td>{r.deals_lost}</td>
                    <td>{r.open_deals}</td>
                    <td>{r.ai_score_average === null ? "—" : r.ai_score_average.toFixed(1)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      <h2>{t("stats.funnel")}</h2>
      {funnel.isPending ? (
        <Loading />
      ) : funnel.isError ? (
        <ErrorState error={funnel.error} onRetry={() => void funnel.refetch()} />
      ) : (
        <>
          <BarChart
            title={t("stats.funnelReached", { deals: funnel.data.deals, won: funnel.data.won, lost: funnel.data.lost })}
            bars={funnel.data.stages.map((s) => ({
              label: s.name,
              value: s.reached,
              text: s.conversion_to_next === null ? String(s.reached) : `${s.reached} → ${Math.round(s.conversion_to_next * 100)}%`,
            }))}
          />
          <p className="muted">{t("stats.winRate", { rate: funnel.data.win_rate === null ? "—" : `${Math.round(funnel.data.win_rate * 100)}%` })}</p>
        </>
      )}
    </>
  );
}
