export { deal, message, pages, pipeline, snapshotOf } from "./fixtures";
export { manager } from "./render";
