import { useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import type { DealDetail } from "../../api/types";
import { ApiError } from "../../api/errors";
import { useI18n } from "../../lib/i18n";
import { formatDuration, useNow } from "../../lib/time";
import { messagingWindow, type WindowState } from "../../lib/window";
import { useSendReply } from "./mutations";

function newKey(): string {
  return typeof crypto !== "undefined" && "randomUUID" in crypto ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
}

export function WindowNotice({ state }: { state: WindowState }) {
  const { t } = useI18n();
  const left = formatDuration(state.remainingMs / 1000, t);
  const text =
    state.phase === "open"
      ? t("reply.windowOpen", { time: left })
      : state.phase === "human_agent"
        ? t("reply.windowHumanAgent", { time: left })
        : state.phase === "closed"
          ? t("reply.windowClosed")
          : t("reply.windowNoMessage");
  return <p className={`window-notice window-${state.phase}`}>{text}</p>;
}

export function ReplyBox({ deal, lastCustomerAt }: { deal: DealDetail; lastCustomerAt: string | null }) {
  const { t } = useI18n();
  const now = useNow(15_000);
  const state = messagingWindow(lastCustomerAt, now);
  const [text, setText] = useState("");
  const [refusal, setRefusal] = useState<string | null>(null);
  // One key per draft: a double click or a retry after a timeout sends once.
  const key = useRef(newKey());
  const send = useSendReply(deal.id);
  // Past 7 days the box stays usable: crm has the final word and answers why it refuses.
  const closed = state.phase === "no_message";

  async function submit(event?: FormEvent) {
    event?.preventDefault();
    const body = text.trim();
    if (!body || send.isPending) return;
    setRefusal(null);
    try {
      await send.mutateAsync({ text: body, idempotency_key: key.current });
      setText("");
      key.current = newKey();
    } catch (e) {
      setRefusal(e instanceof ApiError || e instanceof Error ? e.message : t("common.unknownError"));
    }
  }

  function onKeyDown(event: KeyboardEvent<HTMLTextAreaElement>) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) void submit();
  }

  return (
    <form className="reply-box" onSubmit={submit}>
      <WindowNotice state={state} />
      <label htmlFor="reply-text" className="sr-only">
        {t("reply.label")}
      </label>
      <textarea
        id="reply-text"
        rows={3}
        value={text}
        disabled={closed}
        placeholder={closed ? t("reply.closedPlaceholder") : t("reply.placeholder")}
        onChange={(e) => {
          setText(e.target.value);
          key.current = key.current || newKey();
        }}
        onKeyDown={onKeyDown}
      />
      {refusal && (
        <p className="error" role="alert">
          {refusal}
        </p>
      )}
      <div className="reply-actions">
        <span className="muted">{t("reply.hint")}</span>
        <button type="submit" disabled={closed || !text.trim() || send.isPending}>
          {send.isPending ? t("reply.sending") : t("reply.send")}
        </button>
      </div>
    </form>
  );
}
