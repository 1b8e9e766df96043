"""JGGL CRM scheduler: keeps time for the system and publishes ``scheduler.tick.<job>``;
the services that own the data do the work and report how it went."""
