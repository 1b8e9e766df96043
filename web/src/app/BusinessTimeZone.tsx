import type { ReactNode } from "react";
import { useAuth } from "../lib/auth";
import { browserTimeZone, TimeZoneProvider } from "../lib/time";

/**
 * Dates are shown in the business time zone (setting `business.timezone`), which crm tells
 * every signed-in user with `GET /api/me`; the browser's zone only until that is known.
 */
export function BusinessTimeZone({ children }: { children: ReactNode }) {
  const { user } = useAuth();
  return <TimeZoneProvider zone={user?.business_timezone ?? browserTimeZone()}>{children}</TimeZoneProvider>;
}
