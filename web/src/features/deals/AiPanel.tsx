import type { DealDetail } from "../../api/types";
import { useI18n, type MessageKey } from "../../lib/i18n";
import { formatDateTime, useTimeZone } from "../../lib/time";
import { TemperatureBadge } from "../../components/badges";

const NOTES: [keyof NonNullable<DealDetail["ai_manager_notes"]>, MessageKey][] = [
  ["speed", "ai.speed"],
  ["politeness", "ai.politeness"],
  ["needs_discovery", "ai.needsDiscovery"],
  ["next_step", "ai.nextStep"],
];

export function AiPanel({ deal }: { deal: DealDetail }) {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const heuristic = deal.ai_source === "heuristic";
  return (
    <section className="card ai-panel" aria-label={t("ai.title")}>
      <h2>
        {t("ai.title")} {heuristic && <span className="badge badge-heuristic" title={t("ai.heuristicHint")}>{t("ai.heuristic")}</span>}
      </h2>
      {!deal.ai_analyzed_at && !deal.ai_summary ? (
        <p className="muted">{t("ai.none")}</p>
      ) : (
        <>
          {deal.ai_summary && <p>{deal.ai_summary}</p>}
          <dl className="facts">
            <dt>{t("ai.intent")}</dt>
            <dd>{deal.ai_intent ?? "—"}</dd>
            <dt>{t("ai.temperature")}</dt>
            <dd>{deal.ai_temperature ? <TemperatureBadge temperature={deal.ai_temperature} /> : "—"}</dd>
            <dt>{t("ai.score")}</dt>
            <dd>{deal.ai_score === null ? "—" : `${deal.ai_score}/10`}</dd>
            <dt>{t("ai.nextAction")}</dt>
            <dd>{deal.ai_next_action ?? "—"}</dd>
          </dl>
          {deal.ai_manager_notes && (
            <dl className="facts notes">
              {NOTES.filter(([k]) => deal.ai_manager_notes?.[k]).map(([k, label]) => (
                <div key={k}>
                  <dt>{t(label)}</dt>
                  <dd>{deal.ai_manager_notes?.[k]}</dd>
                </div>
              ))}
            </dl>
          )}
          <p className="muted small">
            {heuristic ? t("ai.heuristicHint") : t("ai.by", { model: deal.ai_model ?? deal.ai_source ?? "AI" })} · {formatDateTime(deal.ai_analyzed_at, locale, zone)}
          </p>
        </>
      )}
    </section>
  );
}
