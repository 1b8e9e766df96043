import { useAuth } from "../../lib/auth";
import type { User } from "../../api/types";
import { useUsers } from "./api";

/** A user's name by id: oneself always; anyone when the admin's user list is at hand. */
export function useUserName(): (id: number | null) => string {
  const { user } = useAuth();
  const users = useUsers(user?.role === "admin");
  return (id) => {
    if (id === null) return "";
    if (id === user?.id) return user.name;
    const found = users.data?.items.find((u: User) => u.id === id);
    return found ? found.name : `#${id}`;
  };
}
