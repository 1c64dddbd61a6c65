//! Fencing: a host that lost its lease on its formation dynos (it could not reach the cluster's database for a
//! while, so another host may run them soon) stops them at once, before anything else.

#[allow(unused_imports)]
use super::*;

impl Manager {
    /// Stops every formation dyno now, without the graceful stop's timeout: their tasks are aborted, which drops
    /// the guests. One-off dynos keep running (they are this host's own, never placed elsewhere). Returns how
    /// many dynos were stopped.
    pub fn fence(&self, why: &str) -> usize {
        let mut fenced: Vec<(String, Dyno)> = Vec::new();
        {
            let mut apps = self.inner.apps.lock().expect("apps lock");
            for (app, dynos) in apps.iter_mut() {
                let names: Vec<String> = dynos
                    .keys()
                    .filter(|name| !is_one_off(name))
                    .cloned()
                    .collect();
                for name in names {
                    let dyno = dynos.remove(&name).expect("listed");
                    fenced.push((app.clone(), dyno));
                }
            }
            let mut retiring = self.inner.retiring.lock().expect("retiring");
            for (app, dynos) in retiring.drain() {
                fenced.extend(dynos.into_iter().map(|dyno| (app.clone(), dyno)));
            }
        }
        for (app, dyno) in &fenced {
            let _ = dyno.stop.send(true);
            dyno.task.abort();
            let name = dyno.info.lock().expect("dyno info").name.clone();
            self.inner.logplex.publish(
                app,
                crate::logs::LogLine::platform(&name, format!("Stopping process at once: {why}")),
            );
        }
        fenced.len()
    }
}
