import { lazy, Suspense } from "react";
import { Navigate, Route, Routes } from "react-router";
import { Loading } from "../components/states";
import { LoginPage } from "../features/auth/LoginPage";
import { InboxPage } from "../features/inbox/InboxPage";
import { DealPage } from "../features/deals/DealPage";
import { RequireAdmin, RequireAuth } from "./guards";
import { Layout } from "./Layout";
import { NotFound } from "./NotFound";

// Pages used less often load on first visit, keeping the first screen small.
const PipelinePage = lazy(() => import("../features/pipeline/PipelinePage"));
const SearchPage = lazy(() => import("../features/search/SearchPage"));
const ContactsPage = lazy(() => import("../features/contacts/ContactsPage"));
const ContactPage = lazy(() => import("../features/contacts/ContactPage"));
const MyStatsPage = lazy(() => import("../features/stats/MyStatsPage"));
const TelegramPage = lazy(() => import("../features/telegram/TelegramPage"));
const UsersPage = lazy(() => import("../features/admin/UsersPage"));
const StagesPage = lazy(() => import("../features/admin/StagesPage"));
const SettingsPage = lazy(() => import("../features/admin/SettingsPage"));
const ChannelsPage = lazy(() => import("../features/admin/ChannelsPage"));
const AuditLogPage = lazy(() => import("../features/admin/AuditLogPage"));
const SystemLogPage = lazy(() => import("../features/admin/SystemLogPage"));
const TeamStatsPage = lazy(() => import("../features/stats/TeamStatsPage"));
const JobsPage = lazy(() => import("../features/admin/JobsPage"));

const admin = (page: React.ReactNode) => <RequireAdmin>{page}</RequireAdmin>;

export function AppRoutes() {
  return (
    <Routes>
      <Route path="/login" element={<LoginPage />} />
      <Route
        element={
          <RequireAuth>
            <Layout />
          </RequireAuth>
        }
      >
        <Route index element={<Navigate to="/inbox" replace />} />
        <Route path="inbox" element={<InboxPage />} />
        <Route path="deals/:dealId" element={<DealPage />} />
        <Route path="pipeline" element={<Lazy><PipelinePage /></Lazy>} />
        <Route path="search" element={<Lazy><SearchPage /></Lazy>} />
        <Route path="contacts" element={<Lazy><ContactsPage /></Lazy>} />
        <Route path="contacts/:contactId" element={<Lazy><ContactPage /></Lazy>} />
        <Route path="stats" element={<Lazy><MyStatsPage /></Lazy>} />
        <Route path="telegram" element={<Lazy><TelegramPage /></Lazy>} />
        <Route path="admin/users" element={admin(<Lazy><UsersPage /></Lazy>)} />
        <Route path="admin/stages" element={admin(<Lazy><StagesPage /></Lazy>)} />
        <Route path="admin/settings" element={admin(<Lazy><SettingsPage /></Lazy>)} />
        <Route path="admin/channels" element={admin(<Lazy><ChannelsPage /></Lazy>)} />
        <Route path="admin/audit-log" element={admin(<Lazy><AuditLogPage /></Lazy>)} />
        <Route path="admin/system-log" element={admin(<Lazy><SystemLogPage /></Lazy>)} />
        <Route path="admin/team" element={admin(<Lazy><TeamStatsPage /></Lazy>)} />
        <Route path="admin/jobs" element={admin(<Lazy><JobsPage /></Lazy>)} />
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}

function Lazy({ children }: { children: React.ReactNode }) {
  return <Suspense fallback={<Loading />}>{children}</Suspense>;
}
