import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { Channel } from "../../api/types";
import { useI18n } from "../../lib/i18n";
import { useToast } from "../../lib/toast";
import { formatDateTime, useTimeZone } from "../../lib/time";
import { EmptyState, ErrorState, Loading, PageHeader } from "../../components/states";
import { PlatformBadge } from "../../components/badges";

export default function ChannelsPage() {
  const { t } = useI18n();
  const channels = useQuery({ queryKey: ["channels"], queryFn: async ({ signal }) => unwrap(await api.GET("/api/channels", { signal })) });
  return (
    <>
      <PageHeader title={t("channels.title")} />
      {channels.isPending ? (
        <Loading />
      ) : channels.isError ? (
        <ErrorState error={channels.error} onRetry={() => void channels.refetch()} />
      ) : channels.data.items.length === 0 ? (
        <EmptyState title={t("channels.none")} hint={t("channels.noneHint")} />
      ) : (
        <ul className="plain-list">
          {channels.data.items.map((c) => (
            <ChannelCard key={c.id} channel={c} />
          ))}
        </ul>
      )}
    </>
  );
}

function ChannelCard({ channel: c }: { channel: Channel }) {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const client = useQueryClient();
  const toast = useToast();
  const [token, setToken] = useState("");
  const refresh = () => void client.invalidateQueries({ queryKey: ["channels"] });
  const setTokenMutation = useMutation({
    mutationFn: async () => unwrap(await api.PUT("/api/channels/{channel_id}/token", { params: { path: { channel_id: c.id } }, body: { token: token.trim() } })),
    onSuccess: () => {
      setToken("");
      toast.show(t("channels.tokenSaved"));
      refresh();
    },
  });
  const toggle = useMutation({
    mutationFn: async () => unwrap(await api.PATCH("/api/channels/{channel_id}", { params: { path: { channel_id: c.id } }, body: { is_active: !c.is_active } })),
    onSuccess: refresh,
    onError: (e) => toast.show(e.message, "error"),
  });
  return (
    <li className={`card channel${c.is_active ? "" : " inactive"}`}>
      <div className="setting-head">
        <PlatformBadge platform={c.platform} />
        <strong>{c.name ?? c.external_id}</strong>
        <span className={`badge badge-health-${c.health_status}`}>{t(`channels.health.${c.health_status}`)}</span>
        {c.needs_reauth && <span className="badge badge-sla-escalated">{t("channels.needsReauth")}</span>}
      </div>
      <dl className="facts">
        <dt>{t("channels.externalId")}</dt>
        <dd>{c.external_id}</dd>
        <dt>{t("channels.lastWebhook")}</dt>
        <dd>{formatDateTime(c.last_webhook_at, locale, zone)}</dd>
        <dt>{t("channels.checked")}</dt>
        <dd>{formatDateTime(c.health_checked_at, locale, zone)}</dd>
        <dt>{t("channels.tokenExpires")}</dt>
        <dd>{formatDateTime(c.token_expires_at, locale, zone)}</dd>
        <dt>{t("channels.ownToken")}</dt>
        <dd>{c.has_own_token ? t("common.yes") : t("common.no")}</dd>
      </dl>
      {c.health_problems.length > 0 && (
        <ul className="problems">
          {c.health_problems.map((p) => (
            <li key={p.code}>
              <code>{p.code}</code> {p.message}
            </li>
          ))}
        </ul>
      )}
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          setTokenMutation.mutate();
        }}
      >
        <label>
          {t("channels.setToken")}
          <input type="password" autoComplete="off" value={token} onChange={(e) => setToken(e.target.value)} />
        </label>
        <button type="submit" disabled={!token.trim() || setTokenMutation.isPending}>
          {t("common.save")}
        </button>
        <button type="button" className={c.is_active ? "danger" : "secondary"} disabled={toggle.isPending} onClick={() => toggle.mutate()}>
          {c.is_active ? t("channels.deactivate") : t("channels.activate")}
        </button>
      </form>
      {setTokenMutation.error && (
        <p className="error" role="alert">
          {setTokenMutation.error.message}
        </p>
      )}
    </li>
  );
}
