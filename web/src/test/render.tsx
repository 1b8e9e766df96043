import type { ReactElement, ReactNode } from "react";
import { render } from "@testing-library/react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { MemoryRouter } from "react-router";
import { I18nProvider, type Language } from "../lib/i18n";
import { ToastProvider } from "../lib/toast";
import { AuthProvider } from "../lib/auth";
import type { Me } from "../api/types";

export const manager: Me = {
  id: 7,
  email: "anna@example.com",
  name: "Anna",
  role: "manager",
  is_active: true,
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
  business_timezone: "UTC",
};

export function testClient(): QueryClient {
  return new QueryClient({ defaultOptions: { queries: { retry: false, gcTime: Infinity }, mutations: { retry: false } } });
}

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
}

interface Options {
  client?: QueryClient;
  route?: string;
  language?: Language;
  user?: Me | null;
}

export function Wrapper({ client, route = "/", language = "en", children }: { client: QueryClient; route?: string; language?: Language; children: ReactNode }) {
  return (
    <MemoryRouter initialEntries={[route]}>
      <QueryClientProvider client={client}>
        <I18nProvider language={language}>
          <ToastProvider>
            <AuthProvider>{children}</AuthProvider>
          </ToastProvider>
        </I18nProvider>
      </QueryClientProvider>
    </MemoryRouter>
  );
}

export function renderWith(ui: ReactElement, { client = testClient(), route, language, user = manager }: Options = {}) {
  if (user !== undefined) client.setQueryData(["me"], user);
  const result = render(
    <Wrapper client={client} route={route} language={language}>
      {ui}
    </Wrapper>,
  );
  return { ...result, client };
}
