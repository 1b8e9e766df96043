import type { Activity } from "../../api/types";
import { useI18n, type MessageKey, type Translate } from "../../lib/i18n";
import { formatDateTime, useTimeZone } from "../../lib/time";
import { ErrorState, Loading } from "../../components/states";
import { useActivities, usePipeline } from "./api";
import { useUserName } from "./useUserName";

const KINDS: Record<string, MessageKey> = {
  created: "timeline.created",
  stage_changed: "timeline.stageChanged",
  amount_changed: "timeline.amountChanged",
  comment_changed: "timeline.commentChanged",
  assigned: "timeline.assigned",
  won: "timeline.won",
  lost: "timeline.lost",
  reopened: "timeline.reopened",
  lost_reason_changed: "timeline.lostReasonChanged",
  task_created: "timeline.taskCreated",
  task_completed: "timeline.taskDone",
  task_reopened: "timeline.taskReopened",
  task_reassigned: "timeline.taskReassigned",
  task_updated: "timeline.taskUpdated",
  reply: "timeline.reply",
  reply_failed: "timeline.replyFailed",
  ai_analysis: "timeline.aiAnalysis",
};

function plain(value: unknown): string {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function describeActivity(a: Activity, t: Translate, userName: (id: number | null) => string = (id) => (id === null ? "" : `#${id}`), stageName?: (key: string) => string): string {
  const key = KINDS[a.kind];
  const data = a.data as Record<string, unknown>;
  const base = key ? t(key) : a.kind.replace(/_/g, " ");
  if (a.kind === "stage_changed" && stageName) {
    return `${base}: ${stageName(plain(data.from))} → ${stageName(plain(data.to))}`;
  }
  const who = (v: unknown) => (typeof v === "number" ? userName(v) : t("deal.unassigned"));
  if (a.kind === "assigned") return `${base}: ${who(data.from)} → ${who(data.to)}`;
  // A task changing hands: which task, from whom, to whom (nobody when it was let go).
  if (a.kind === "task_reassigned") return `${base}: ${plain(data.title)} — ${who(data.from)} → ${who(data.to)}`;
  if ("from" in data || "to" in data) return `${base}: ${plain(data.from)} → ${plain(data.to)}`;
  if (typeof data.reason === "string" && data.reason) return `${base}: ${data.reason}`;
  if (typeof data.title === "string") return `${base}: ${data.title}`;
  if (typeof data.error === "string") return `${base}: ${data.error}`;
  return base;
}

export function Timeline({ dealId }: { dealId: number }) {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const activities = useActivities(dealId);
  const knownName = useUserName();
  const named = activities.data?.user_names ?? {};
  // crm names the users a timeline mentions; the app's own knowledge covers the rest.
  const userName = (id: number | null) => (id !== null && named[String(id)]) || knownName(id);
  const stages = usePipeline().data?.stages;
  const stageName = (key: string) => stages?.find((s) => s.key === key)?.name ?? key;
  return (
    <section className="card" aria-label={t("timeline.title")}>
      <h2>{t("timeline.title")}</h2>
      {activities.isPending ? (
        <Loading />
      ) : activities.isError ? (
        <ErrorState error={activities.error} onRetry={() => void activities.refetch()} />
      ) : activities.data.items.length === 0 ? (
        <p className="muted">{t("timeline.none")}</p>
      ) : (
        <ol className="timeline">
          {[...activities.data.items].reverse().map((a) => (
            <li key={a.id}>
              <time dateTime={a.created_at}>{formatDateTime(a.created_at, locale, zone)}</time>
              <span>{describeActivity(a, t, userName, stageName)}</span>
              <span className="muted small">{a.actor_label ?? userName(a.actor_user_id)}</span>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
