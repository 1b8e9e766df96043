import { useState } from "react";
import { QueryClientProvider, type QueryClient } from "@tanstack/react-query";
import { BrowserRouter } from "react-router";
import { I18nProvider } from "../lib/i18n";
import { AuthProvider } from "../lib/auth";
import { LiveProvider } from "../lib/liveProvider";
import { ToastProvider } from "../lib/toast";
import { makeQueryClient } from "./queryClient";
import { AppRoutes } from "./routes";
import { BusinessTimeZone } from "./BusinessTimeZone";

export function Providers({ client, children }: { client: QueryClient; children: React.ReactNode }) {
  return (
    <QueryClientProvider client={client}>
      <I18nProvider>
        <ToastProvider>
          <AuthProvider>
            <LiveProvider>
              <BusinessTimeZone>{children}</BusinessTimeZone>
            </LiveProvider>
          </AuthProvider>
        </ToastProvider>
      </I18nProvider>
    </QueryClientProvider>
  );
}

export function App() {
  const [client] = useState(makeQueryClient);
  return (
    <BrowserRouter>
      <Providers client={client}>
        <AppRoutes />
      </Providers>
    </BrowserRouter>
  );
}
