import { useState } from "react";
import { NavLink, Outlet, useNavigate } from "react-router";
import { useAuth } from "../lib/auth";
import { LANGUAGES, useI18n, type Language, type MessageKey } from "../lib/i18n";
import { useLive } from "../lib/liveProvider";

const MANAGER_LINKS: [string, MessageKey][] = [
  ["/inbox", "nav.inbox"],
  ["/pipeline", "nav.pipeline"],
  ["/search", "nav.search"],
  ["/contacts", "nav.contacts"],
  ["/stats", "nav.myStats"],
  ["/telegram", "nav.telegram"],
];

const ADMIN_LINKS: [string, MessageKey][] = [
  ["/admin/users", "nav.users"],
  ["/admin/stages", "nav.stages"],
  ["/admin/settings", "nav.settings"],
  ["/admin/channels", "nav.channels"],
  ["/admin/jobs", "nav.jobs"],
  ["/admin/team", "nav.teamStats"],
  ["/admin/audit-log", "nav.auditLog"],
  ["/admin/system-log", "nav.systemLog"],
];

export function Layout() {
  const { user, logout } = useAuth();
  const { t } = useI18n();
  const [menuOpen, setMenuOpen] = useState(false);
  const navigate = useNavigate();
  const close = () => setMenuOpen(false);

  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        {t("nav.skip")}
      </a>
      <header className="topbar">
        <button type="button" className="menu-button" aria-expanded={menuOpen} aria-controls="sidebar" onClick={() => setMenuOpen((o) => !o)}>
          ☰<span className="sr-only"> {t("nav.menu")}</span>
        </button>
        <span className="brand">JGGL CRM</span>
        <LiveIndicator />
        <LanguageSwitch />
        <span className="user-name">{user?.name}</span>
        <button
          type="button"
          className="secondary"
          onClick={async () => {
            await logout();
            navigate("/login", { replace: true });
          }}
        >
          {t("nav.logout")}
        </button>
      </header>
      <nav id="sidebar" className={menuOpen ? "sidebar open" : "sidebar"} aria-label={t("nav.main")}>
        <ul>
          {MANAGER_LINKS.map(([to, key]) => (
            <li key={to}>
              <NavLink to={to} onClick={close}>
                {t(key)}
              </NavLink>
            </li>
          ))}
        </ul>
        {user?.role === "admin" && (
          <>
            <h2 className="nav-heading">{t("nav.admin")}</h2>
            <ul>
              {ADMIN_LINKS.map(([to, key]) => (
                <li key={to}>
                  <NavLink to={to} onClick={close}>
                    {t(key)}
                  </NavLink>
                </li>
              ))}
            </ul>
          </>
        )}
      </nav>
      <main id="main" className="content" tabIndex={-1}>
        <Outlet />
      </main>
    </div>
  );
}

function LiveIndicator() {
  const { status } = useLive();
  const { t } = useI18n();
  return (
    <span className={`live live-${status}`} role="status" title={t(`live.${status}`)}>
      <span className="live-dot" aria-hidden="true" />
      <span className="live-text">{t(`live.${status}`)}</span>
    </span>
  );
}

export function LanguageSwitch() {
  const { language, setLanguage, t } = useI18n();
  return (
    <label className="language">
      <span className="sr-only">{t("nav.language")}</span>
      <select value={language} onChange={(e) => setLanguage(e.target.value as Language)}>
        {LANGUAGES.map((l) => (
          <option key={l} value={l}>
            {l === "ru" ? "Русский" : "English"}
          </option>
        ))}
      </select>
    </label>
  );
}
