import { Link } from "react-router";
import type { Deal } from "../../api/types";
import { useI18n } from "../../lib/i18n";
import { formatDateTime, formatDuration, useNow, useTimeZone } from "../../lib/time";
import { unreadLabel } from "../../lib/dealCache";
import { Avatar, PlatformBadge, SlaBadge, TemperatureBadge, useCustomerName } from "../../components/badges";

export function DealRow({ deal }: { deal: Deal }) {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const now = useNow();
  const customer = useCustomerName()(deal.contact);
  const waiting = deal.awaiting_reply_since ? (now - Date.parse(deal.awaiting_reply_since)) / 1000 : null;

  return (
    <li className={["deal-row", deal.awaiting_reply_since ? "awaiting" : "", deal.unread > 0 ? "unread" : ""].filter(Boolean).join(" ")}>
      <Link to={`/deals/${deal.id}`} className="deal-row-link">
        <Avatar name={customer} url={deal.contact.avatar_url} />
        <span className="deal-row-main">
          <span className="deal-row-title">
            <strong>{customer}</strong> <PlatformBadge platform={deal.platform} />
            <span className="badge badge-stage">{deal.stage.name}</span>
            <TemperatureBadge temperature={deal.ai_temperature} />
          </span>
          <span className="deal-row-preview">
            {deal.unread > 0 && (
              <span className="unread-count">
                <span aria-hidden="true">{unreadLabel(deal.unread)}</span>
                <span className="sr-only">{t("inbox.unread", { count: unreadLabel(deal.unread) })}</span>
              </span>
            )}
            {deal.last_message_text ?? t("inbox.noMessages")}
          </span>
        </span>
        <span className="deal-row-meta">
          <time dateTime={deal.last_message_at ?? deal.created_at}>{formatDateTime(deal.last_message_at ?? deal.created_at, locale, zone)}</time>
          {waiting !== null && <span className="waiting">{t("inbox.waiting", { time: formatDuration(waiting, t) })}</span>}
          <SlaBadge sla={deal.sla} />
          <span className="muted">{deal.assignee?.name ?? (deal.assignee_id ? `#${deal.assignee_id}` : t("deal.unassigned"))}</span>
        </span>
      </Link>
    </li>
  );
}
