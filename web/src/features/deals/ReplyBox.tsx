import { useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import type { DealDetail } from "../../api/types";
import { ApiError } from "../../api/errors";
import { useI18n } from "../../lib/i18n";
import { formatDuration, useNow } from "../../lib/time";
import { messagingWindow, type WindowState } from "../../lib/window";
import { useSendReply } from "./mutations";
import { safeUrl } from "./Attachment";

type AttachmentType = "image" | "video" | "audio" | "file";
const ATTACHMENT_TYPES: AttachmentType[] = ["image", "video", "audio", "file"];

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

export function ReplyBox({ deal }: { deal: DealDetail }) {
  const { t } = useI18n();
  const now = useNow(15_000);
  // From the conversation's last customer message as crm keeps it, however little history is loaded.
  const state = messagingWindow(deal.last_inbound_at, now);
  const [text, setText] = useState("");
  const [refusal, setRefusal] = useState<string | null>(null);
  const [attaching, setAttaching] = useState(false);
  const [fileType, setFileType] = useState<AttachmentType>("image");
  const [fileUrl, setFileUrl] = useState("");
  // One key per draft: a double click or a retry after a timeout sends once.
  const key = useRef(newKey());
  const send = useSendReply(deal.id);
  // Past 7 days the box stays usable: crm has the final word and answers why it refuses.
  const closed = state.phase === "no_message";

  async function submit(event?: FormEvent) {
    event?.preventDefault();
    const body = text.trim();
    const url = attaching ? safeUrl(fileUrl.trim()) : null;
    if ((!body && !url) || send.isPending) return;
    setRefusal(null);
    try {
      await send.mutateAsync({ text: body || null, attachments: url ? [{ type: fileType, url }] : [], idempotency_key: key.current });
      setText("");
      setFileUrl("");
      setAttaching(false);
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
      {attaching && (
        <fieldset className="attach">
          <legend>{t("reply.attachTitle")}</legend>
          <label>
            {t("reply.attachType")}
            <select value={fileType} onChange={(e) => setFileType(e.target.value as AttachmentType)}>
              {ATTACHMENT_TYPES.map((type) => (
                <option key={type} value={type}>
                  {t(`attachment.${type}`)}
                </option>
              ))}
            </select>
          </label>
          <label>
            {t("reply.attachUrl")}
            <input type="url" inputMode="url" placeholder="https://" value={fileUrl} onChange={(e) => setFileUrl(e.target.value)} />
          </label>
        </fieldset>
      )}
      <div className="reply-actions">
        <span className="muted">{t("reply.hint")}</span>
        <button type="button" className="secondary" aria-expanded={attaching} onClick={() => setAttaching((a) => !a)} disabled={closed}>
          {attaching ? t("reply.attachRemove") : t("reply.attach")}
        </button>
        <button type="submit" disabled={closed || (!text.trim() && !(attaching && safeUrl(fileUrl.trim()))) || send.isPending}>
          {send.isPending ? t("reply.sending") : t("reply.send")}
        </button>
      </div>
    </form>
  );
}
