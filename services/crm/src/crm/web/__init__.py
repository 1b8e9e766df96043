"""What every HTTP endpoint of crm shares: request state, error shapes, input types, cursors."""
