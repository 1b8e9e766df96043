import type { Message } from "../../api/types";
import { useI18n } from "../../lib/i18n";
import { formatDateTime, useTimeZone } from "../../lib/time";
import { Attachment, type AttachmentData } from "./Attachment";

export const META_INBOX = "Meta inbox";

function reactionList(reactions: Message["reactions"]): string[] {
  return Object.values(reactions ?? {}).map((r) => {
    const item = r as { emoji?: string; reaction?: string };
    return item.emoji ?? item.reaction ?? "♥";
  });
}

export function MessageBubble({ message: m }: { message: Message }) {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const echo = m.direction === "out" && m.author_label === META_INBOX;
  const reactions = reactionList(m.reactions);
  const classes = ["message", m.direction === "in" ? "message-in" : "message-out", m.is_deleted ? "message-deleted" : "", `status-${m.status}`];

  return (
    <li className={classes.filter(Boolean).join(" ")}>
      <div className="message-bubble">
        {echo && <span className="badge badge-echo">{t("message.metaInbox")}</span>}
        {m.is_deleted ? (
          <p className="deleted-note">{t("message.deleted")}</p>
        ) : (
          <MessageBody message={m} />
        )}
        {reactions.length > 0 && (
          <p className="reactions" aria-label={t("message.reactions")}>
            {reactions.join(" ")}
          </p>
        )}
      </div>
      <p className="message-meta">
        <time dateTime={m.sent_at}>{formatDateTime(m.sent_at, locale, zone)}</time>
        {m.is_edited && !m.is_deleted && <span> · {t("message.edited")}</span>}
        {m.direction === "out" && <DeliveryStatus message={m} />}
      </p>
    </li>
  );
}

function MessageBody({ message: m }: { message: Message }) {
  const { t } = useI18n();
  const story = m.reply_to_story as { url?: string } | null;
  return (
    <>
      {m.kind === "story_mention" && <p className="kind-note">{t("message.storyMention")}</p>}
      {story && (
        <p className="kind-note">
          {t("message.storyReply")} {story.url && <a href={story.url} target="_blank" rel="noreferrer noopener">{t("message.openStory")}</a>}
        </p>
      )}
      {m.kind === "postback" && <p className="kind-note">{t("message.postback", { payload: m.postback_payload ?? "" })}</p>}
      {m.kind === "unsupported" && <p className="kind-note">{t("message.unsupported")}</p>}
      {m.text && <p className="message-text">{m.text}</p>}
      {m.quick_reply_payload && <p className="kind-note">{t("message.quickReply", { payload: m.quick_reply_payload })}</p>}
      {(m.attachments as unknown as AttachmentData[]).map((a, i) => (
        <Attachment key={i} attachment={a} />
      ))}
    </>
  );
}

function DeliveryStatus({ message: m }: { message: Message }) {
  const { t } = useI18n();
  if (m.status === "failed") {
    return (
      <span className="delivery failed" role="status">
        {" · "}
        {t("message.failed")}
        {m.error_message ? `: ${m.error_message}` : ""}
        {m.error_code ? ` (${m.error_code})` : ""}
      </span>
    );
  }
  const key = m.read_at ? "message.read" : m.delivered_at ? "message.delivered" : m.status === "queued" ? "message.queued" : "message.sent";
  return (
    <span className={`delivery ${m.status}`}>
      {" · "}
      {t(key)}
    </span>
  );
}
