//! The log history the hosts of a cluster share: each host appends its own new lines of each app, and a log
//! session on any host reads them beside the live hosts' own histories, so that the lines of a host that died
//! stay in the app's history. Each app keeps its newest lines only (as many as one host keeps).

use super::PgStore;
use crate::store::StoreError;

impl PgStore {
    /// Appends `lines` (app and line, oldest first; each line as a log session sends it) to the apps' shared
    /// histories, then trims each of those apps' history to its newest `keep` lines, in one transaction. Lines of
    /// apps that no longer exist are left out.
    pub fn append_log_history(
        &self,
        lines: &[(String, String)],
        keep: usize,
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let (apps, texts): (Vec<&str>, Vec<&str>) =
            lines.iter().map(|(a, l)| (a.as_str(), l.as_str())).unzip();
        // The id of each app's `keep`th newest line: everything older goes.
        let offset = i64::try_from(keep.max(1) - 1).unwrap_or(i64::MAX);
        let mut lent = self.take()?;
        let tx = pollster::block_on(lent.client().transaction())?;
        // `WITH ORDINALITY` keeps the lines' order in their ids.
        pollster::block_on(tx.execute(
            "INSERT INTO log_history (app, line)
             SELECT l.app, l.line FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS l (app, line, n)
             WHERE EXISTS (SELECT 1 FROM apps WHERE apps.name = l.app)
             ORDER BY l.n",
            &[&apps, &texts],
        ))?;
        pollster::block_on(tx.execute(
            "DELETE FROM log_history h USING (SELECT DISTINCT unnest($1::text[]) AS app) touched
             WHERE h.app = touched.app AND h.id < (
                 SELECT id FROM log_history WHERE app = touched.app ORDER BY id DESC OFFSET $2 LIMIT 1)",
            &[&apps, &offset],
        ))?;
        pollster::block_on(tx.commit())?;
        Ok(())
    }

    /// The newest `limit` lines of `app`'s shared history, oldest first.
    pub fn log_history(&self, app: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut lent = self.take()?;
        let rows = pollster::block_on(lent.client().query(
            "SELECT line FROM (
                 SELECT id, line FROM log_history WHERE app = $1 ORDER BY id DESC LIMIT $2) newest
             ORDER BY id",
            &[&app, &limit],
        ))?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(StoreError::from))
            .collect()
    }
}
