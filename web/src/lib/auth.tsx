import { createContext, useCallback, useContext, useEffect, useMemo, type ReactNode } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, setUnauthorizedHandler } from "../api/client";
import { unwrap } from "../api/errors";
import { signIn, signOut } from "../api/session";
import type { Me } from "../api/types";

interface AuthValue {
  user: Me | null;
  loading: boolean;
  login: (email: string, password: string) => Promise<Me>;
  logout: () => Promise<void>;
}

const AuthContext = createContext<AuthValue | null>(null);
export const meKey = ["me"] as const;

async function fetchMe(): Promise<Me | null> {
  const result = await api.GET("/api/me");
  if (result.response.status === 401) return null;
  return unwrap(result);
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const client = useQueryClient();
  const me = useQuery({ queryKey: meKey, queryFn: fetchMe, staleTime: 5 * 60_000, retry: false });

  useEffect(() => {
    // Any 401 means the session ended: forget the user; the route guard sends them to /login.
    setUnauthorizedHandler(() => {
      if (client.getQueryData(meKey) !== null) client.setQueryData(meKey, null);
    });
    return () => setUnauthorizedHandler(() => undefined);
  }, [client]);

  const login = useCallback(
    async (email: string, password: string) => {
      const { user } = await signIn(email, password);
      client.removeQueries({ predicate: (q) => q.queryKey[0] !== "me" });
      client.setQueryData(meKey, user);
      return user;
    },
    [client],
  );

  const logout = useCallback(async () => {
    await signOut().catch(() => undefined);
    client.clear();
    client.setQueryData(meKey, null);
  }, [client]);

  const value = useMemo<AuthValue>(
    () => ({ user: me.data ?? null, loading: me.isPending, login, logout }),
    [me.data, me.isPending, login, logout],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthValue {
  const value = useContext(AuthContext);
  if (!value) throw new Error("useAuth outside AuthProvider");
  return value;
}

/** Where to go after sign-in: only a path inside this app, never another site. */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/login")) return "/";
  return next;
}
