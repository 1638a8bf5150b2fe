-- Notifications for the runs and the alerts, so that no instance polls their tables while nothing changes
-- (see 0009 for the channel and its payload). A run started (its deadline may be the soonest now) or ended, on
-- any instance; an alert opened, acknowledged or resolved. Not the counts a run's calls add every few moments.
CREATE TRIGGER agent_runs_started AFTER INSERT ON agent_runs
    FOR EACH ROW EXECUTE FUNCTION toolgate_state_changed('runs');
CREATE TRIGGER agent_runs_ended AFTER UPDATE OF status ON agent_runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION toolgate_state_changed('runs');

CREATE TRIGGER alerts_opened AFTER INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION toolgate_state_changed('alerts');
CREATE TRIGGER alerts_changed AFTER UPDATE OF status ON alerts
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION toolgate_state_changed('alerts');
