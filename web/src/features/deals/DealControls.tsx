import { useState, type FormEvent } from "react";
import type { DealDetail, DealPatch } from "../../api/types";
import { useAuth } from "../../lib/auth";
import { useI18n } from "../../lib/i18n";
import { useToast } from "../../lib/toast";
import { formatDateTime, formatDuration, useTimeZone } from "../../lib/time";
import { usePipeline, useUsers } from "./api";
import { usePatchDeal, useTakeDeal } from "./mutations";

export function DealControls({ deal }: { deal: DealDetail }) {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const { user } = useAuth();
  const toast = useToast();
  const patch = usePatchDeal(deal.id);
  const take = useTakeDeal(deal.id);
  const pipeline = usePipeline();
  const users = useUsers(user?.role === "admin");
  const [error, setError] = useState<string | null>(null);

  async function save(body: DealPatch, done?: string) {
    setError(null);
    try {
      await patch.mutateAsync(body);
      if (done) toast.show(done);
    } catch (e) {
      setError(e instanceof Error ? e.message : t("common.unknownError"));
    }
  }

  return (
    <section className="card deal-controls" aria-label={t("deal.details")}>
      <h2>{t("deal.details")}</h2>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <label>
        {t("deal.stage")}
        <select value={deal.stage.key} disabled={patch.isPending || deal.status !== "open"} onChange={(e) => void save({ stage: e.target.value }, t("deal.saved"))}>
          {!pipeline.data?.stages.some((s) => s.key === deal.stage.key) && <option value={deal.stage.key}>{deal.stage.name}</option>}
          {pipeline.data?.stages.map((s) => (
            <option key={s.key} value={s.key}>
              {s.name}
            </option>
          ))}
        </select>
      </label>
      <AmountField key={`a${deal.amount ?? ""}`} deal={deal} onSave={(amount) => save({ amount }, t("deal.saved"))} />
      <CommentField key={`c${deal.comment ?? ""}`} deal={deal} onSave={(comment) => save({ comment }, t("deal.saved"))} />
      <div className="field">
        <span className="field-label">{t("deal.assignee")}</span>
        {user?.role === "admin" ? (
          <select
            aria-label={t("deal.assignee")}
            value={deal.assignee_id ?? ""}
            onChange={(e) => void save({ assignee_id: e.target.value ? Number(e.target.value) : null }, t("deal.saved"))}
          >
            <option value="">{t("deal.unassigned")}</option>
            {users.data?.items
              .filter((u) => u.is_active || u.id === deal.assignee_id)
              .map((u) => (
                <option key={u.id} value={u.id}>
                  {u.name}
                </option>
              ))}
          </select>
        ) : (
          <span>{deal.assignee?.name ?? t("deal.unassigned")}</span>
        )}
        {deal.assignee_id === null && (
          <button
            type="button"
            disabled={take.isPending}
            onClick={() =>
              take.mutate(undefined, {
                onSuccess: () => toast.show(t("deal.taken")),
                onError: (e) => setError(e.message),
              })
            }
          >
            {t("deal.take")}
          </button>
        )}
      </div>
      <Outcome deal={deal} busy={patch.isPending} onSave={save} />
      <dl className="facts">
        <dt>{t("deal.leadSource")}</dt>
        <dd>{deal.lead_source ?? "—"}</dd>
        <dt>{t("deal.created")}</dt>
        <dd>{formatDateTime(deal.created_at, locale, zone)}</dd>
        <dt>{t("deal.firstResponse")}</dt>
        <dd>{formatDuration(deal.first_response_seconds, t)}</dd>
        {deal.awaiting_reply_since && (
          <>
            <dt>{t("deal.awaitingSince")}</dt>
            <dd>{formatDateTime(deal.awaiting_reply_since, locale, zone)}</dd>
          </>
        )}
      </dl>
    </section>
  );
}

function AmountField({ deal, onSave }: { deal: DealDetail; onSave: (amount: string | null) => Promise<void> }) {
  const { t } = useI18n();
  const [value, setValue] = useState(deal.amount ?? "");
  const changed = value !== (deal.amount ?? "");
  return (
    <form
      className="inline-form"
      onSubmit={(e: FormEvent) => {
        e.preventDefault();
        void onSave(value.trim() ? value.trim() : null);
      }}
    >
      <label>
        {t("deal.amount")}
        <input inputMode="decimal" value={value} onChange={(e) => setValue(e.target.value.replace(",", "."))} pattern="[0-9]*[.]?[0-9]*" />
      </label>
      <button type="submit" className="secondary" disabled={!changed}>
        {t("common.save")}
      </button>
    </form>
  );
}

function CommentField({ deal, onSave }: { deal: DealDetail; onSave: (comment: string | null) => Promise<void> }) {
  const { t } = useI18n();
  const [value, setValue] = useState(deal.comment ?? "");
  const changed = value !== (deal.comment ?? "");
  return (
    <form
      className="stack"
      onSubmit={(e: FormEvent) => {
        e.preventDefault();
        void onSave(value.trim() ? value : null);
      }}
    >
      <label>
        {t("deal.comment")}
        <textarea rows={3} value={value} onChange={(e) => setValue(e.target.value)} />
      </label>
      <button type="submit" className="secondary" disabled={!changed}>
        {t("common.save")}
      </button>
    </form>
  );
}

function Outcome({ deal, busy, onSave }: { deal: DealDetail; busy: boolean; onSave: (body: DealPatch, done?: string) => Promise<void> }) {
  const { t } = useI18n();
  const [losing, setLosing] = useState(false);
  const [reason, setReason] = useState("");

  if (deal.status !== "open") {
    return (
      <div className="outcome">
        <p>
          {t(deal.status === "won" ? "deal.wonNote" : "deal.lostNote")}
          {deal.lost_reason ? `: ${deal.lost_reason}` : ""}
        </p>
        <button type="button" className="secondary" disabled={busy} onClick={() => void onSave({ status: "open" }, t("deal.reopened"))}>
          {t("deal.reopen")}
        </button>
      </div>
    );
  }
  if (losing) {
    return (
      <form
        className="stack outcome"
        onSubmit={(e) => {
          e.preventDefault();
          void onSave({ status: "lost", lost_reason: reason.trim() || null }, t("deal.markedLost")).then(() => setLosing(false));
        }}
      >
        <label>
          {t("deal.lostReason")}
          <input value={reason} onChange={(e) => setReason(e.target.value)} autoFocus required />
        </label>
        <div className="row">
          <button type="submit" className="danger" disabled={busy || !reason.trim()}>
            {t("deal.markLost")}
          </button>
          <button type="button" className="secondary" onClick={() => setLosing(false)}>
            {t("common.cancel")}
          </button>
        </div>
      </form>
    );
  }
  return (
    <div className="row outcome">
      <button type="button" className="success" disabled={busy} onClick={() => void onSave({ status: "won" }, t("deal.markedWon"))}>
        {t("deal.markWon")}
      </button>
      <button type="button" className="danger" disabled={busy} onClick={() => setLosing(true)}>
        {t("deal.markLost")}
      </button>
    </div>
  );
}
