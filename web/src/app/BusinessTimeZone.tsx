import type { ReactNode } from "react";
import { useQuery } from "@tanstack/react-query";
import { api } from "../api/client";
import { useAuth } from "../lib/auth";
import { browserTimeZone, TimeZoneProvider } from "../lib/time";

/**
 * Dates are shown in the business time zone (setting `business.timezone`). crm lets only
 * admins read settings and offers no public field for it yet, so a manager's app uses the
 * browser's zone (normally the same office); an admin's app uses the setting.
 */
export function BusinessTimeZone({ children }: { children: ReactNode }) {
  const { user } = useAuth();
  const setting = useQuery({
    queryKey: ["settings", "business.timezone"],
    enabled: user?.role === "admin",
    staleTime: 10 * 60_000,
    queryFn: async () => {
      const { data } = await api.GET("/api/settings/{key}", { params: { path: { key: "business.timezone" } } });
      return data?.value ?? null;
    },
  });
  return <TimeZoneProvider zone={setting.data ?? browserTimeZone()}>{children}</TimeZoneProvider>;
}
