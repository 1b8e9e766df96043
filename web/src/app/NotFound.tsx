import { Link } from "react-router";
import { useI18n } from "../lib/i18n";
import { EmptyState } from "../components/states";

export function NotFound() {
  const { t } = useI18n();
  return (
    <EmptyState title={t("notFound.title")} hint={t("notFound.hint")}>
      <Link to="/inbox">{t("nav.inbox")}</Link>
    </EmptyState>
  );
}

export function NotAllowed() {
  const { t } = useI18n();
  return (
    <EmptyState title={t("notAllowed.title")} hint={t("notAllowed.hint")}>
      <Link to="/inbox">{t("nav.inbox")}</Link>
    </EmptyState>
  );
}
