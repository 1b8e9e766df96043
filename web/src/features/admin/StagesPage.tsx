import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api/client";
import { unwrap } from "../../api/errors";
import type { Stage } from "../../api/types";
import type { components } from "../../api/schema";
import { useI18n } from "../../lib/i18n";
import { useToast } from "../../lib/toast";
import { ErrorState, Loading, PageHeader } from "../../components/states";

type StageUpdate = components["schemas"]["StageUpdate"];

export default function StagesPage() {
  const { t } = useI18n();
  const client = useQueryClient();
  const toast = useToast();
  const stages = useQuery({ queryKey: ["stages"], queryFn: async ({ signal }) => unwrap(await api.GET("/api/stages", { signal })) });
  const update = useMutation({
    mutationFn: async ({ id, body }: { id: number; body: StageUpdate }) => unwrap(await api.PATCH("/api/stages/{stage_id}", { params: { path: { stage_id: id } }, body })),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: ["stages"] });
      void client.invalidateQueries({ queryKey: ["pipeline"] });
      toast.show(t("stages.saved"));
    },
    onError: (e) => toast.show(e.message, "error"),
  });

  if (stages.isPending) return <Loading />;
  if (stages.isError) return <ErrorState error={stages.error} onRetry={() => void stages.refetch()} />;
  const items = [...stages.data.items].sort((a, b) => a.position - b.position);

  // Moving a stage swaps its position with its neighbour's.
  const swap = async (a: Stage, b: Stage) => {
    try {
      await update.mutateAsync({ id: a.id, body: { position: b.position } });
      await update.mutateAsync({ id: b.id, body: { position: a.position } });
    } catch {
      // Already reported by onError; the list is refetched either way.
    }
  };

  return (
    <>
      <PageHeader title={t("stages.title")} />
      <p className="muted">{t("stages.hint")}</p>
      <ol className="stage-list">
        {items.map((s, i) => {
          const above = items[i - 1];
          const below = items[i + 1];
          return (
          <li key={s.id} className={`card stage-row${s.is_active ? "" : " inactive"}`}>
            <StageName stage={s} onSave={(name) => update.mutate({ id: s.id, body: { name } })} />
            <code className="muted">{s.key}</code>
            <div className="row">
              <button type="button" className="secondary" disabled={!above || update.isPending} onClick={() => above && void swap(s, above)} aria-label={t("stages.up", { name: s.name })}>
                ↑
              </button>
              <button type="button" className="secondary" disabled={!below || update.isPending} onClick={() => below && void swap(s, below)} aria-label={t("stages.down", { name: s.name })}>
                ↓
              </button>
              <button type="button" className={s.is_active ? "danger" : "secondary"} disabled={update.isPending} onClick={() => update.mutate({ id: s.id, body: { is_active: !s.is_active } })}>
                {s.is_active ? t("stages.deactivate") : t("stages.activate")}
              </button>
            </div>
          </li>
          );
        })}
      </ol>
      <CreateStage nextPosition={(items[items.length - 1]?.position ?? 0) + 1} />
    </>
  );
}

function StageName({ stage, onSave }: { stage: Stage; onSave: (name: string) => void }) {
  const { t } = useI18n();
  const [name, setName] = useState(stage.name);
  return (
    <form
      className="inline-form"
      onSubmit={(e) => {
        e.preventDefault();
        if (name.trim() && name.trim() !== stage.name) onSave(name.trim());
      }}
    >
      <label>
        <span className="sr-only">{t("stages.nameOf", { key: stage.key })}</span>
        <input value={name} onChange={(e) => setName(e.target.value)} maxLength={100} />
      </label>
      <button type="submit" className="secondary" disabled={!name.trim() || name.trim() === stage.name}>
        {t("stages.rename")}
      </button>
    </form>
  );
}

function CreateStage({ nextPosition }: { nextPosition: number }) {
  const { t } = useI18n();
  const client = useQueryClient();
  const [key, setKey] = useState("");
  const [name, setName] = useState("");
  const create = useMutation({
    mutationFn: async () => unwrap(await api.POST("/api/stages", { body: { key: key.trim(), name: name.trim(), position: nextPosition, is_active: true } })),
    onSuccess: () => {
      setKey("");
      setName("");
      void client.invalidateQueries({ queryKey: ["stages"] });
      void client.invalidateQueries({ queryKey: ["pipeline"] });
    },
  });
  return (
    <form
      className="card form-grid"
      onSubmit={(e: FormEvent) => {
        e.preventDefault();
        create.mutate();
      }}
    >
      <h2>{t("stages.create")}</h2>
      <label>
        {t("stages.key")}
        <input required pattern="[a-z0-9_]+" value={key} onChange={(e) => setKey(e.target.value)} />
      </label>
      <label>
        {t("stages.name")}
        <input required value={name} onChange={(e) => setName(e.target.value)} />
      </label>
      {create.error && (
        <p className="error" role="alert">
          {create.error.message}
        </p>
      )}
      <button type="submit" disabled={create.isPending}>
        {t("stages.createButton")}
      </button>
    </form>
  );
}
