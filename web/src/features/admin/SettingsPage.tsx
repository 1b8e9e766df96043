import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { Setting } from "../../api/types";
import { useI18n } from "../../lib/i18n";
import { useToast } from "../../lib/toast";
import { formatDateTime, useTimeZone } from "../../lib/time";
import { ErrorState, Loading, PageHeader } from "../../components/states";

export default function SettingsPage() {
  const { t } = useI18n();
  const settings = useQuery({ queryKey: ["settings"], queryFn: async ({ signal }) => unwrap(await api.GET("/api/settings", { signal })) });
  return (
    <>
      <PageHeader title={t("settings.title")} />
      <p className="muted">{t("settings.hint")}</p>
      {settings.isPending ? (
        <Loading />
      ) : settings.isError ? (
        <ErrorState error={settings.error} onRetry={() => void settings.refetch()} />
      ) : (
        <ul className="plain-list">
          {settings.data.items.map((s) => (
            <SettingRow key={s.key} setting={s} />
          ))}
        </ul>
      )}
    </>
  );
}

function SettingRow({ setting: s }: { setting: Setting }) {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const client = useQueryClient();
  const toast = useToast();
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const done = (message: string) => {
    setValue("");
    setError(null);
    toast.show(message);
    void client.invalidateQueries({ queryKey: ["settings"] });
  };
  const save = useMutation({
    mutationFn: async () => unwrap(await api.PUT("/api/settings/{key}", { params: { path: { key: s.key } }, body: { value } })),
    onSuccess: () => done(t("settings.saved", { key: s.key })),
    onError: (e) => setError(e.message),
  });
  const reset = useMutation({
    mutationFn: async () => unwrap(await api.DELETE("/api/settings/{key}", { params: { path: { key: s.key } } })),
    onSuccess: () => done(t("settings.resetDone", { key: s.key })),
    onError: (e) => setError(e.message),
  });
  const id = `setting-${s.key.replace(/\W/g, "-")}`;
  return (
    <li className="card setting">
      <div className="setting-head">
        <label htmlFor={id}>
          <code>{s.key}</code>
        </label>
        <span className={`badge badge-source-${s.source}`}>{t(`settings.source.${s.source}`)}</span>
        {s.secret && <span className="badge">{t("settings.secret")}</span>}
      </div>
      <p className="muted small">{s.description}</p>
      <p>
        {t("settings.current")}: <code>{s.secret && s.fingerprint ? t("settings.secretSet", { fp: s.fingerprint }) : (s.value ?? t("settings.unset"))}</code> <span className="muted small">({t("settings.env", { env: s.env })})</span>
      </p>
      {s.updated_at && (
        <p className="muted small">{t("settings.updated", { when: formatDateTime(s.updated_at, locale, zone), who: s.updated_by?.email ?? "—" })}</p>
      )}
      {s.problem && (
        <p className="error" role="alert">
          {s.problem}
        </p>
      )}
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          save.mutate();
        }}
      >
        <input id={id} type={s.secret ? "password" : "text"} autoComplete="off" placeholder={t("settings.newValue")} value={value} onChange={(e) => setValue(e.target.value)} />
        <button type="submit" disabled={save.isPending || value === ""}>
          {t("common.save")}
        </button>
        {s.source === "database" && (
          <button type="button" className="secondary" disabled={reset.isPending} onClick={() => reset.mutate()}>
            {t("settings.reset")}
          </button>
        )}
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </li>
  );
}
