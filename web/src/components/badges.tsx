import type { Deal, Platform } from "../api/types";
import { useI18n } from "../lib/i18n";

export function PlatformBadge({ platform }: { platform: Platform }) {
  const { t } = useI18n();
  return (
    <span className={`badge badge-${platform}`} title={t(`platform.${platform}`)}>
      {platform === "instagram" ? "IG" : "FB"}
      <span className="sr-only"> {t(`platform.${platform}`)}</span>
    </span>
  );
}

export function SlaBadge({ sla }: { sla: Deal["sla"] }) {
  const { t } = useI18n();
  if (!sla) return null;
  return <span className={`badge badge-sla-${sla}`}>{t(`sla.${sla}`)}</span>;
}

export function TemperatureBadge({ temperature }: { temperature: string | null }) {
  const { t } = useI18n();
  if (!temperature) return null;
  const known = temperature === "hot" || temperature === "warm" || temperature === "cold";
  return <span className={`badge badge-temp-${known ? temperature : "other"}`}>{known ? t(`temperature.${temperature}`) : temperature}</span>;
}

export function StatusBadge({ status }: { status: Deal["status"] }) {
  const { t } = useI18n();
  return <span className={`badge badge-status-${status}`}>{t(`status.${status}`)}</span>;
}

/**
 * The customer as people read them: crm's display name, except that a customer whose
 * profile is not known yet (crm falls back to the bare platform id) is "New customer".
 */
export function useCustomerName(): (contact: { name: string | null; username: string | null; external_id: string; display_name: string }) => string {
  const { t } = useI18n();
  return (contact) => (!contact.name && !contact.username && contact.display_name === contact.external_id ? t("contact.unnamed") : contact.display_name);
}

export function Avatar({ name, url }: { name: string; url: string | null | undefined }) {
  if (url) return <img className="avatar" src={url} alt="" referrerPolicy="no-referrer" loading="lazy" />;
  const initials = name.replace(/^@/, "").slice(0, 2).toUpperCase();
  return (
    <span className="avatar avatar-initials" aria-hidden="true">
      {initials}
    </span>
  );
}
