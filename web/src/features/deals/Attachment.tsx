import { useI18n } from "../../lib/i18n";

export interface AttachmentData {
  type: string;
  url?: string | null;
  title?: string;
  lat?: number;
  long?: number;
}

/** Only http(s) links reach an href or src; anything else is shown as text. */
export function safeUrl(url: string | null | undefined): string | null {
  if (!url) return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}

export function Attachment({ attachment: a }: { attachment: AttachmentData }) {
  const { t } = useI18n();
  const url = safeUrl(a.url);
  switch (a.type) {
    case "image":
    case "sticker":
      return url ? (
        <a href={url} target="_blank" rel="noreferrer noopener" className="attachment">
          <img src={url} alt={a.title ?? t("attachment.image")} loading="lazy" referrerPolicy="no-referrer" />
        </a>
      ) : (
        <p className="kind-note">{t("attachment.image")}</p>
      );
    case "video":
    case "ig_reel":
    case "reel":
      return url ? (
        <video className="attachment" src={url} controls preload="none" aria-label={a.title ?? t("attachment.video")} />
      ) : (
        <p className="kind-note">{t("attachment.video")}</p>
      );
    case "audio":
      return url ? <audio className="attachment" src={url} controls preload="none" aria-label={t("attachment.audio")} /> : <p className="kind-note">{t("attachment.audio")}</p>;
    case "location": {
      const has = typeof a.lat === "number" && typeof a.long === "number";
      const map = has ? `https://www.openstreetmap.org/?mlat=${a.lat}&mlon=${a.long}#map=16/${a.lat}/${a.long}` : url;
      return (
        <p className="attachment attachment-location">
          📍 {a.title ?? t("attachment.location")} {has && `(${a.lat}, ${a.long})`}{" "}
          {map && <a href={map} target="_blank" rel="noreferrer noopener">{t("attachment.openMap")}</a>}
        </p>
      );
    }
    case "share":
    case "fallback":
    case "template":
    case "story_mention":
      return (
        <p className="attachment attachment-share">
          🔗 {a.title ?? t(a.type === "story_mention" ? "message.storyMention" : "attachment.share")}{" "}
          {url && <a href={url} target="_blank" rel="noreferrer noopener">{t("attachment.open")}</a>}
        </p>
      );
    default:
      return (
        <p className="attachment attachment-file">
          📎 {a.title ?? t("attachment.file")} ({a.type}){" "}
          {url && <a href={url} target="_blank" rel="noreferrer noopener" download>{t("attachment.download")}</a>}
        </p>
      );
  }
}
