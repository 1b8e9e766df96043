import { useQuery } from "@tanstack/react-query";
import { Link, useParams } from "react-router";
import { api } from "../../api/client";
import { ApiError, unwrap } from "../../api/errors";
import { useI18n } from "../../lib/i18n";
import { formatDateTime, formatMoney, useTimeZone } from "../../lib/time";
import { EmptyState, ErrorState, Loading } from "../../components/states";
import { Avatar, PlatformBadge, StatusBadge } from "../../components/badges";

export default function ContactPage() {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const id = Number(useParams().contactId);
  const contact = useQuery({
    queryKey: ["contact", id],
    queryFn: async ({ signal }) => unwrap(await api.GET("/api/contacts/{contact_id}", { params: { path: { contact_id: id } }, signal })),
  });
  if (contact.isPending) return <Loading />;
  if (contact.isError) {
    if (contact.error instanceof ApiError && contact.error.status === 404) return <EmptyState title={t("contacts.notFound")} hint={t("deal.notFoundHint")} />;
    return <ErrorState error={contact.error} onRetry={() => void contact.refetch()} />;
  }
  const c = contact.data;
  return (
    <>
      <header className="deal-header">
        <Avatar name={c.display_name} url={c.avatar_url} />
        <div>
          <h1>{c.display_name}</h1>
          <p className="muted">
            <PlatformBadge platform={c.platform} /> {c.username ? `@${c.username} · ` : ""}
            {t("contacts.externalId")}: {c.external_id}
          </p>
        </div>
      </header>
      <dl className="facts card">
        <dt>{t("contacts.firstSeen")}</dt>
        <dd>{formatDateTime(c.first_seen_at, locale, zone)}</dd>
        <dt>{t("contacts.lastSeen")}</dt>
        <dd>{formatDateTime(c.last_seen_at, locale, zone)}</dd>
      </dl>
      <h2>{t("contacts.deals")}</h2>
      {c.deals.length === 0 ? (
        <p className="muted">{t("contacts.noDeals")}</p>
      ) : (
        <ul className="plain-list">
          {c.deals.map((d) => (
            <li key={d.id} className="card">
              <Link to={`/deals/${d.id}`}>{t("deal.number", { id: d.id })}</Link> · {d.stage.name} · <StatusBadge status={d.status} /> · {formatMoney(d.amount, locale)} ·{" "}
              <span className="muted">{formatDateTime(d.last_message_at ?? d.created_at, locale, zone)}</span>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}
