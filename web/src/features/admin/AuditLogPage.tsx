import { useState } from "react";
import { useInfiniteQuery } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { components } from "../../api/schema";
import { useI18n } from "../../lib/i18n";
import { formatDateTime, useTimeZone } from "../../lib/time";
import { EmptyState, ErrorState, Loading, PageHeader } from "../../components/states";

export default function AuditLogPage() {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const [key, setKey] = useState("");
  const [actor, setActor] = useState("");
  const log = useInfiniteQuery({
    queryKey: ["audit-log", key.trim(), actor.trim()],
    initialPageParam: null as string | null,
    getNextPageParam: (last: components["schemas"]["AuditPage"]) => last.next_cursor ?? null,
    queryFn: async ({ pageParam, signal }): Promise<components["schemas"]["AuditPage"]> =>
      unwrap(await api.GET("/api/audit-log", { params: { query: { key: key.trim() || null, actor: actor.trim() || null, cursor: pageParam, limit: 50 } }, signal })),
  });
  const items = log.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <>
      <PageHeader title={t("audit.title")}>
        <label>
          {t("audit.key")}
          <input value={key} onChange={(e) => setKey(e.target.value)} />
        </label>
        <label>
          {t("audit.actor")}
          <input value={actor} onChange={(e) => setActor(e.target.value)} />
        </label>
      </PageHeader>
      {log.isPending ? (
        <Loading />
      ) : log.isError ? (
        <ErrorState error={log.error} onRetry={() => void log.refetch()} />
      ) : items.length === 0 ? (
        <EmptyState title={t("audit.none")} hint={key.trim() || actor.trim() ? t("audit.noneHint") : t("audit.noneYetHint")} />
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{t("log.when")}</th>
                <th scope="col">{t("audit.actor")}</th>
                <th scope="col">{t("audit.action")}</th>
                <th scope="col">{t("audit.key")}</th>
                <th scope="col">{t("audit.change")}</th>
              </tr>
            </thead>
            <tbody>
              {items.map((e) => (
                <tr key={e.id}>
                  <td>{formatDateTime(e.occurred_at, locale, zone)}</td>
                  <td>{e.actor_email ?? "—"}</td>
                  <td>{e.action}</td>
                  <td>
                    <code>{e.key}</code>
                  </td>
                  <td>
                    <code>{e.old_value ?? "—"}</code> → <code>{e.new_value ?? "—"}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {log.hasNextPage && (
        <button type="button" className="secondary load-more" disabled={log.isFetchingNextPage} onClick={() => void log.fetchNextPage()}>
          {t("common.loadMore")}
        </button>
      )}
    </>
  );
}
