import type { components } from "./schema";

type S = components["schemas"];
export type User = S["UserRead"];
/** The signed-in user, with the business time zone their app shows dates in. */
export type Me = S["MeRead"];
/** A deal as lists show it (with its unread count); the deal answer has all of it and more. */
export type Deal = S["DealListItem"];
export type DealDetail = S["DealDetail"];
export type DealPatch = S["DealPatch"];
export type Message = S["MessageItem"];
export type Activity = S["ActivityItem"];
export type Task = S["TaskRead"];
export type Pipeline = S["Pipeline"];
export type PipelineStage = S["PipelineStage"];
export type Stage = S["StageRead"];
export type StageRef = S["StageRef"];
export type Contact = S["ContactItem"];
export type ContactDetail = S["ContactDetail"];
export type SearchHit = S["SearchHit"];
export type ManagerStats = S["ManagerStats"];
export type FunnelReport = S["FunnelReport"];
export type Setting = S["SettingRead"];
export type Channel = S["ChannelRead"];
export type AuditEntry = S["AuditEntryRead"];
export type SystemEntry = S["SystemEntryRead"];
export type Job = S["JobUpdatedData"];
export type TelegramLink = S["TelegramLink"];
export type Platform = Deal["platform"];
