import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { User } from "../../api/types";
import type { components } from "../../api/schema";
import { useAuth } from "../../lib/auth";
import { useI18n } from "../../lib/i18n";
import { useToast } from "../../lib/toast";
import { EmptyState, ErrorState, Loading, PageHeader } from "../../components/states";

type UserUpdate = components["schemas"]["UserUpdate"];

export default function UsersPage() {
  const { t } = useI18n();
  const users = useQuery({ queryKey: ["users"], queryFn: async ({ signal }) => unwrap(await api.GET("/api/users", { signal })) });
  return (
    <>
      <PageHeader title={t("users.title")} />
      <CreateUser />
      {users.isPending ? (
        <Loading />
      ) : users.isError ? (
        <ErrorState error={users.error} onRetry={() => void users.refetch()} />
      ) : users.data.items.length === 0 ? (
        <EmptyState title={t("users.none")} />
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{t("users.name")}</th>
                <th scope="col">{t("users.email")}</th>
                <th scope="col">{t("users.role")}</th>
                <th scope="col">{t("users.active")}</th>
                <th scope="col">{t("common.actions")}</th>
              </tr>
            </thead>
            <tbody>
              {users.data.items.map((u) => (
                <UserRow key={u.id} user={u} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function useUpdateUser(id: number) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: async (body: UserUpdate) => unwrap(await api.PATCH("/api/users/{user_id}", { params: { path: { user_id: id } }, body })),
    onSuccess: () => void client.invalidateQueries({ queryKey: ["users"] }),
  });
}

function UserRow({ user }: { user: User }) {
  const { t } = useI18n();
  const { user: me } = useAuth();
  const toast = useToast();
  const update = useUpdateUser(user.id);
  const client = useQueryClient();
  const unlink = useMutation({
    mutationFn: async () => {
      const result = await api.DELETE("/api/users/{user_id}/telegram-link", { params: { path: { user_id: user.id } } });
      if (!result.response.ok) unwrap(result);
    },
    onSuccess: () => toast.show(t("users.telegramUnlinked", { name: user.name })),
  });
  const change = (body: UserUpdate) =>
    update.mutate(body, {
      onSuccess: () => toast.show(t("users.saved", { name: user.name })),
      onError: (e) => {
        // crm's refusal (e.g. the last active admin) in its own words; the row shows the truth again.
        toast.show(e.message, "error");
        void client.invalidateQueries({ queryKey: ["users"] });
      },
    });
  return (
    <tr className={user.is_active ? "" : "inactive"}>
      <th scope="row">
        {user.name}
        {me?.id === user.id && <span className="muted"> ({t("users.you")})</span>}
      </th>
      <td>{user.email}</td>
      <td>
        <select aria-label={t("users.roleOf", { name: user.name })} value={user.role} disabled={update.isPending} onChange={(e) => change({ role: e.target.value as User["role"] })}>
          <option value="manager">{t("users.manager")}</option>
          <option value="admin">{t("users.admin")}</option>
        </select>
      </td>
      <td>{user.is_active ? t("common.yes") : t("common.no")}</td>
      <td>
        <div className="row">
        <button type="button" className={user.is_active ? "danger" : "secondary"} disabled={update.isPending} onClick={() => change({ is_active: !user.is_active })}>
          {user.is_active ? t("users.deactivate") : t("users.activate")}
        </button>
        <button type="button" className="secondary" disabled={unlink.isPending} onClick={() => unlink.mutate(undefined, { onError: (e) => toast.show(e.message, "error") })}>
          {t("users.unlinkTelegram")}
        </button>
        </div>
      </td>
    </tr>
  );
}

function CreateUser() {
  const { t } = useI18n();
  const client = useQueryClient();
  const toast = useToast();
  const [form, setForm] = useState({ name: "", email: "", password: "", role: "manager" as User["role"] });
  const create = useMutation({
    mutationFn: async () => unwrap(await api.POST("/api/users", { body: form })),
    onSuccess: (user) => {
      void client.invalidateQueries({ queryKey: ["users"] });
      toast.show(t("users.created", { name: user.name }));
      setForm({ name: "", email: "", password: "", role: "manager" });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <form className="card form-grid" onSubmit={submit} aria-label={t("users.create")}>
      <h2>{t("users.create")}</h2>
      <label>
        {t("users.name")}
        <input required value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} />
      </label>
      <label>
        {t("users.email")}
        <input type="email" required value={form.email} onChange={(e) => setForm({ ...form, email: e.target.value })} />
      </label>
      <label>
        {t("users.password")}
        <input type="password" autoComplete="new-password" required minLength={8} value={form.password} onChange={(e) => setForm({ ...form, password: e.target.value })} />
      </label>
      <label>
        {t("users.role")}
        <select value={form.role} onChange={(e) => setForm({ ...form, role: e.target.value as User["role"] })}>
          <option value="manager">{t("users.manager")}</option>
          <option value="admin">{t("users.admin")}</option>
        </select>
      </label>
      {create.error && (
        <p className="error" role="alert">
          {create.error.message}
        </p>
      )}
      <button type="submit" disabled={create.isPending}>
        {t("users.createButton")}
      </button>
    </form>
  );
}
