import { useState } from "react";
import { useInfiniteQuery } from "@tanstack/react-query";
import { Link } from "react-router";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { components } from "../../api/schema";
import { useI18n } from "../../lib/i18n";
import { formatDateTime, useTimeZone } from "../../lib/time";
import { EmptyState, ErrorState, Loading, PageHeader } from "../../components/states";
import { Avatar, PlatformBadge } from "../../components/badges";

export default function ContactsPage() {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const [q, setQ] = useState("");
  const [platform, setPlatform] = useState<"" | "messenger" | "instagram">("");
  const query = q.trim();
  const contacts = useInfiniteQuery({
    queryKey: ["contacts", query, platform],
    initialPageParam: null as string | null,
    getNextPageParam: (last: components["schemas"]["ContactPage"]) => last.next_cursor ?? null,
    queryFn: async ({ pageParam, signal }): Promise<components["schemas"]["ContactPage"]> =>
      unwrap(
        await api.GET("/api/contacts", {
          params: { query: { q: query || null, platform: platform || null, cursor: pageParam, limit: 50 } },
          signal,
        }),
      ),
  });
  const items = contacts.data?.pages.flatMap((p) => p.items) ?? [];

  return (
    <>
      <PageHeader title={t("contacts.title")}>
        <label>
          {t("contacts.find")}
          <input type="search" value={q} onChange={(e) => setQ(e.target.value)} />
        </label>
        <label>
          {t("filters.platform")}
          <select value={platform} onChange={(e) => setPlatform(e.target.value as typeof platform)}>
            <option value="">{t("filters.any")}</option>
            <option value="messenger">{t("platform.messenger")}</option>
            <option value="instagram">{t("platform.instagram")}</option>
          </select>
        </label>
      </PageHeader>
      {contacts.isPending ? (
        <Loading />
      ) : contacts.isError ? (
        <ErrorState error={contacts.error} onRetry={() => void contacts.refetch()} />
      ) : items.length === 0 ? (
        <EmptyState title={t("contacts.none")} hint={t("contacts.noneHint")} />
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{t("contacts.name")}</th>
                <th scope="col">{t("filters.platform")}</th>
                <th scope="col">{t("contacts.lastSeen")}</th>
              </tr>
            </thead>
            <tbody>
              {items.map((c) => (
                <tr key={c.id}>
                  <td>
                    <Link to={`/contacts/${c.id}`} className="contact-link">
                      <Avatar name={c.display_name} url={c.avatar_url} /> {c.display_name}
                    </Link>
                    {c.username && <span className="muted"> @{c.username}</span>}
                  </td>
                  <td>
                    <PlatformBadge platform={c.platform} />
                  </td>
                  <td>{formatDateTime(c.last_seen_at, locale, zone)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {contacts.hasNextPage && (
        <button type="button" className="secondary load-more" disabled={contacts.isFetchingNextPage} onClick={() => void contacts.fetchNextPage()}>
          {t("common.loadMore")}
        </button>
      )}
    </>
  );
}
