import { useMutation } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import { useI18n } from "../../lib/i18n";
import { useToast } from "../../lib/toast";
import { formatDateTime, useTimeZone } from "../../lib/time";
import { PageHeader } from "../../components/states";
import { safeUrl } from "../deals/Attachment";
import { QrCode } from "./QrCode";

export default function TelegramPage() {
  const { t, locale } = useI18n();
  const zone = useTimeZone();
  const toast = useToast();
  const link = useMutation({ mutationFn: async () => unwrap(await api.POST("/api/me/telegram-link")) });
  const unlink = useMutation({
    mutationFn: async () => {
      const result = await api.DELETE("/api/me/telegram-link");
      if (!result.response.ok) unwrap(result);
    },
    onSuccess: () => {
      link.reset();
      toast.show(t("telegram.unlinked"));
    },
  });
  const deepLink = safeUrl(link.data?.deep_link);

  return (
    <>
      <PageHeader title={t("telegram.title")} />
      <div className="card stack telegram">
        <p>{t("telegram.intro")}</p>
        <div className="row">
          <button type="button" onClick={() => link.mutate()} disabled={link.isPending}>
            {link.data ? t("telegram.newCode") : t("telegram.getCode")}
          </button>
          <button type="button" className="secondary" onClick={() => unlink.mutate()} disabled={unlink.isPending}>
            {t("telegram.unlink")}
          </button>
        </div>
        {(link.error ?? unlink.error) && (
          <p className="error" role="alert">
            {(link.error ?? unlink.error)?.message}
          </p>
        )}
        {link.data && (
          <div className="telegram-code">
            {deepLink && <QrCode value={deepLink} label={t("telegram.qr")} />}
            <div className="stack">
              <p>
                {t("telegram.code")}: <code className="code">{link.data.code}</code>
              </p>
              {deepLink && (
                <p>
                  <a href={deepLink} target="_blank" rel="noreferrer noopener">
                    {t("telegram.open")}
                  </a>
                </p>
              )}
              <p className="muted">{t("telegram.manual", { code: link.data.code })}</p>
              <p className="muted">{t("telegram.expires", { time: formatDateTime(link.data.expires_at, locale, zone) })}</p>
            </div>
          </div>
        )}
      </div>
    </>
  );
}
