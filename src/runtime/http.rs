//! `wasi:http` web dynos: a component exporting `wasi:http/incoming-handler` serves requests from a small pool
//! of warm instances.
//!
//! A web dyno of this kind is one environment, one quota and up to [`HttpSettings::max_instances`] instances
//! made from one `ProxyPre`. A request takes an idle instance (or makes one), runs `handle` on it, and gives it
//! back when `handle` returns, so an instance serves many requests in turn as a long-running process would.
//! An instance that traps, or misses its deadline, is dropped and never reused; with
//! [`HttpSettings::fresh_instances`] every request gets a new one. Outgoing requests are refused: guests reach
//! nothing by default. The instances share the dyno's one filesystem (see `runtime::p2fs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::{Body, Bytes};
use tokio::sync::{Semaphore, oneshot};
use wasmtime::Store;
use wasmtime::component::{Component, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::NetworkPolicy;
use super::component_io::{ComponentInput, ComponentOutput};
use super::limits::DynoLimiter;
use super::outgoing::Outgoing;
use super::p2fs::{FsCtx, FsCtxView, FsView};
use super::stdio::{Credit, Input, Output};
use super::vfs::{Fs, Quota};
use super::{RunSpec, RuntimeError};

/// How a `wasi:http` dyno keeps its instances ([`Runtime::http_dyno`](crate::Runtime::http_dyno)).
///
/// ```
/// use std::time::Duration;
/// use wasmdyno::runtime::http::HttpSettings;
///
/// let mut settings = HttpSettings::default();
/// assert_eq!((settings.max_instances, settings.fresh_instances), (16, false));
/// settings.fresh_instances = true; // per-request isolation
/// settings.deadline = Duration::from_secs(30);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpSettings {
    /// Instances serving at once; further requests wait for one to be free.
    pub max_instances: usize,
    /// A new instance for every request (per-request isolation) instead of warm reuse.
    pub fresh_instances: bool,
    /// Requests one instance serves before it is replaced (bounds what a long-lived instance accumulates).
    pub max_requests_per_instance: u64,
    /// The longest one `handle` call may run, response body included; past it the instance is dropped.
    pub deadline: Duration,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings {
            max_instances: 16,
            fresh_instances: false,
            max_requests_per_instance: 100_000,
            deadline: Duration::from_secs(600),
        }
    }
}

/// Why a request got no response from the dyno, from [`HttpDyno::handle`].
///
/// ```
/// use wasmdyno::runtime::http::HttpFailure;
///
/// // The status a host answers with when the dyno gave no response.
/// fn status(failure: &HttpFailure) -> u16 {
///     match failure {
///         HttpFailure::Deadline => 504,
///         HttpFailure::Closed => 503,
///         _ => 502,
///     }
/// }
/// assert_eq!(status(&HttpFailure::Deadline), 504);
/// assert_eq!(HttpFailure::NoResponse.to_string(), "the handler returned without a response");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpFailure {
    /// The instance trapped (or failed) before it set a response.
    #[error("the instance trapped: {0}")]
    Trap(String),
    /// `handle` returned without setting a response.
    #[error("the handler returned without a response")]
    NoResponse,
    /// The guest set an error instead of a response.
    #[error("the handler answered an error: {0:?}")]
    Guest(ErrorCode),
    /// The deadline passed before a response.
    #[error("the handler missed its deadline")]
    Deadline,
    /// A new instance could not be made (e.g. the dyno's memory quota is spent).
    #[error("cannot instantiate the handler: {0}")]
    Instantiate(String),
    /// The dyno is stopping.
    #[error("the dyno is stopping")]
    Closed,
}

pub(crate) struct HttpState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    fs: FsCtx,
    hooks: Outgoing,
    limits: DynoLimiter,
}

impl FsView for HttpState {
    fn dyno_fs(&mut self) -> FsCtxView<'_> {
        FsCtxView {
            ctx: &self.fs,
            table: &mut self.table,
        }
    }
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// A warm instance and the store it lives in.
struct Warm {
    store: Store<HttpState>,
    proxy: Proxy,
    served: u64,
}

pub use super::Report;

/// One `wasi:http` web dyno: its instances and what they share. [`Runtime::http_dyno`](crate::Runtime::http_dyno)
/// makes one of a component exporting `wasi:http/incoming-handler`.
///
/// ```
/// # async fn host(runtime: &wasmdyno::Runtime, guest: &wasmdyno::runtime::Guest) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use http_body_util::Empty;
/// use hyper::body::Bytes;
/// use wasmdyno::{runtime::http::HttpSettings, runtime::RunSpec};
///
/// let spec = RunSpec::new(vec!["handler.wasm".into()], Default::default(), Default::default());
/// if let Some(dyno) = runtime.http_dyno(guest, spec, HttpSettings::default())? {
///     let request = hyper::Request::get("/").header("host", "hello.localhost").body(Empty::<Bytes>::new())?;
///     let response = dyno.handle(request).await?;
///     println!("{}", response.status());
///     dyno.close(Duration::from_secs(30)).await;
/// }
/// # Ok(()) }
/// ```
pub struct HttpDyno {
    pre: ProxyPre<HttpState>,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    quota: Arc<Quota>,
    /// The dyno's one filesystem: every instance sees it, so a file written while serving one request is there
    /// for the next, whichever instance serves it.
    fs: Arc<Mutex<Fs>>,
    stdout: Output,
    stderr: Output,
    /// The dyno's log rate, shared by every instance's stdout and stderr.
    log_credit: (Option<Credit>, Option<Credit>),
    /// The dyno's CPU time, sampled by the epoch ticks of all its instances.
    cpu: Option<Arc<std::sync::atomic::AtomicU64>>,
    report: Report,
    network: Arc<NetworkPolicy>,
    idle: Mutex<Vec<Warm>>,
    permits: Arc<Semaphore>,
    settings: HttpSettings,
    closed: AtomicBool,
}

impl HttpDyno {
    pub(crate) fn new(pre: ProxyPre<HttpState>, spec: RunSpec, settings: HttpSettings) -> HttpDyno {
        let max = settings.max_instances.max(1);
        let quota = spec
            .quota
            .clone()
            .unwrap_or_else(|| Arc::new(Quota::new(spec.size.memory() as u64)));
        let fs = Arc::new(Mutex::new(Fs::new(spec.image.clone(), quota.clone())));
        HttpDyno {
            pre,
            argv: spec.argv,
            env: spec.env.into_iter().collect(),
            quota,
            fs,
            stdout: spec.stdout,
            stderr: spec.stderr,
            log_credit: (spec.stdout_credit, spec.stderr_credit),
            cpu: spec.cpu,
            report: spec.platform,
            network: Arc::new(spec.network),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max)),
            settings,
            closed: AtomicBool::new(false),
        }
    }

    async fn instantiate(&self) -> Result<Warm, HttpFailure> {
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdin(ComponentInput(Input::closed()))
            .stdout(ComponentOutput(
                self.stdout.clone(),
                self.log_credit.0.clone(),
            ))
            .stderr(ComponentOutput(
                self.stderr.clone(),
                self.log_credit.1.clone(),
            ))
            .args(&self.argv)
            .envs(&self.env)
            .initial_cwd("/");
        let reachable = self.network.resolve_all().await;
        super::policy::sockets(&mut builder, None, reachable);
        let state = HttpState {
            wasi: builder.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            fs: FsCtx::new(self.fs.clone()),
            hooks: Outgoing::new(self.network.clone()),
            limits: DynoLimiter::new(self.quota.clone()).with_report(self.report.clone()),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        super::yield_on_every_tick(&mut store, None, self.cpu.clone(), None);
        let proxy = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| HttpFailure::Instantiate(format!("{e:#}")))?;
        Ok(Warm {
            store,
            proxy,
            served: 0,
        })
    }

    /// Serves one request. The response's body streams from the instance, which goes back to the pool once
    /// `handle` has returned.
    ///
    /// The handler runs in the caller's task until it first waits after setting its response (most return by
    /// then); one still writing finishes in a task of its own, under the deadline. Dropping this future before
    /// the response drops the instance with it.
    ///
    /// ```
    /// # async fn host(dyno: std::sync::Arc<wasmdyno::runtime::http::HttpDyno>) -> Result<(), Box<dyn std::error::Error>> {
    /// use http_body_util::{BodyExt, Full};
    /// use hyper::body::Bytes;
    /// use wasmdyno::runtime::http::HttpFailure;
    ///
    /// let request = hyper::Request::post("/echo").body(Full::new(Bytes::from("hello")))?;
    /// match dyno.handle(request).await {
    ///     Ok(response) => {
    ///         let body = response.into_body().collect().await.map(|body| body.to_bytes());
    ///         println!("{body:?}");
    ///     }
    ///     Err(HttpFailure::Deadline) => println!("504: the handler was too slow"),
    ///     Err(other) => println!("502: {other}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn handle<B>(
        self: &Arc<Self>,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, HttpFailure>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(HttpFailure::Closed);
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HttpFailure::Closed)?;
        let warm = self.idle.lock().expect("idle instances").pop();
        let Warm {
            mut store,
            proxy,
            served,
        } = match warm {
            Some(warm) => warm,
            None => self.instantiate().await?,
        };
        let (sender, receiver) = oneshot::channel();
        let internal = |e: wasmtime::Error| HttpFailure::Trap(format!("{e:#}"));
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(internal)?;
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(internal)?;

        let dyno = self.clone();
        let mut call = Box::pin(async move {
            let _permit = permit;
            let call = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam);
            match tokio::time::timeout(dyno.settings.deadline, call).await {
                Ok(Ok(())) => {
                    let served = served + 1;
                    let keep = !dyno.settings.fresh_instances
                        && served < dyno.settings.max_requests_per_instance
                        && !dyno.closed.load(Ordering::Acquire);
                    if keep {
                        dyno.idle.lock().expect("idle instances").push(Warm {
                            store,
                            proxy,
                            served,
                        });
                    }
                    Ok(())
                }
                Ok(Err(e)) => {
                    let cause = super::trap_cause(&format!("{e:?}")).to_string();
                    (dyno.report)(&format!("Instance trapped and was discarded: {cause}"));
                    Err(HttpFailure::Trap(cause))
                }
                Err(_) => {
                    (dyno.report)(&format!(
                        "Instance ran past its {}s deadline and was discarded",
                        dyno.settings.deadline.as_secs_f64()
                    ));
                    Err(HttpFailure::Deadline)
                }
            }
        });
        // The call runs in the caller's task until the response head is set: no task and no wakeup across
        // threads per request. A caller that gives up (the router's timeout, a client gone) drops the call, and
        // the instance with it.
        let mut receiver = receiver;
        let response = tokio::select! {
            biased;
            response = &mut receiver => response,
            done = &mut call => {
                // The handler returned; it may have set its response just before.
                return match (receiver.try_recv(), done) {
                    (Ok(Ok(response)), _) => Ok(response),
                    (Ok(Err(code)), _) => Err(HttpFailure::Guest(code)),
                    (Err(_), Ok(())) => Err(HttpFailure::NoResponse),
                    (Err(_), Err(failure)) => Err(failure),
                };
            }
        };
        match response {
            Ok(response) => {
                // Most handlers write a short body and return right after setting the response: let this one
                // run on until it waits. One still writing (a streamed or large body) finishes in a task of
                // its own, under its deadline, while the router sends what it wrote.
                if std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx)))
                    .await
                    .is_pending()
                {
                    tokio::spawn(call);
                }
                response.map_err(HttpFailure::Guest)
            }
            // The response parameter was dropped unset: the handler's own end says why.
            Err(_) => match call.await {
                Ok(()) => Err(HttpFailure::NoResponse),
                Err(failure) => Err(failure),
            },
        }
    }

    /// Stops taking requests and waits up to `timeout` for those in flight; warm instances are dropped. True if
    /// every request in flight finished in time.
    ///
    /// ```
    /// # async fn host(dyno: std::sync::Arc<wasmdyno::runtime::http::HttpDyno>) {
    /// use std::time::Duration;
    ///
    /// if !dyno.close(Duration::from_secs(30)).await {
    ///     eprintln!("requests were still in flight after 30s");
    /// }
    /// # }
    /// ```
    pub async fn close(&self, timeout: Duration) -> bool {
        self.closed.store(true, Ordering::Release);
        self.idle.lock().expect("idle instances").clear();
        let all = self.settings.max_instances.max(1) as u32;
        let drained = tokio::time::timeout(timeout, self.permits.acquire_many(all))
            .await
            .is_ok();
        self.permits.close();
        self.idle.lock().expect("idle instances").clear();
        drained
    }
}

/// The linker for `wasi:http` handlers: wasmtime-wasi's p2 interfaces with our `wasi:filesystem` over its, plus
/// `wasi:http`.
pub(crate) fn linker(
    engine: &wasmtime::Engine,
) -> Result<wasmtime::component::Linker<HttpState>, RuntimeError> {
    let mut linker = wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RuntimeError::Wasmtime)?;
    super::p2fs::add_to_linker(&mut linker).map_err(RuntimeError::Wasmtime)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(RuntimeError::Wasmtime)?;
    Ok(linker)
}

/// The component's `ProxyPre` if it exports `wasi:http/incoming-handler`, `None` if it does not.
pub(crate) fn proxy_pre(
    linker: &wasmtime::component::Linker<HttpState>,
    component: &Component,
) -> Result<Option<ProxyPre<HttpState>>, RuntimeError> {
    let exports_handler = component
        .component_type()
        .exports(linker.engine())
        .any(|(name, _)| name.starts_with("wasi:http/incoming-handler@0.2"));
    if !exports_handler {
        return Ok(None);
    }
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
    ProxyPre::new(pre)
        .map(Some)
        .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))
}
