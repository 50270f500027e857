//! Per-store host state: WASI contexts, the HTTP hooks that route outgoing requests through the
//! pod network, the memory limiter, the CPU meter, and stdout/stderr into the container log.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::config::ConfigFiles;
use super::guard::{LogLimiter, PodGuard};
use super::keyvalue::{KvDb, KvView};
use super::limits::{Killed, MemLimiter, RunMeter};
use crate::PodSandbox;
use crate::logs::{LogStreamKind, RunLog};
use crate::network::{BoxError, Network, Route};

/// Store data of component instances (commands and HTTP services).
pub(crate) struct Host {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: PodHooks,
    pub(crate) limits: Limits,
    /// `wasi:config/store` values (empty unless the container declared `wasi:config`).
    pub(crate) config: ConfigFiles,
    /// The `wasi:keyvalue` database (`None` unless the container declared `wasi:keyvalue`).
    pub(crate) keyvalue: Option<Arc<KvDb>>,
}

impl Host {
    /// The `wasi:config` view the linker hands to the config host functions.
    pub(crate) fn config_view(&mut self) -> wasmtime_wasi_config::WasiConfig<'_> {
        self.config.view()
    }

    /// The `wasi:keyvalue` view the linker hands to the keyvalue host functions.
    pub(crate) fn keyvalue_view(&mut self) -> KvView<'_> {
        KvView {
            db: self.keyvalue.as_ref(),
            table: &mut self.table,
        }
    }
}

/// Store data of preview-1 modules.
pub(crate) struct P1Host {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limits: Limits,
}

/// What every store carries for resource control.
pub(crate) struct Limits {
    pub(crate) limiter: MemLimiter,
    pub(crate) meter: Arc<RunMeter>,
}

pub(crate) trait HasLimits: Send + 'static {
    fn limits(&mut self) -> &mut Limits;
}

impl HasLimits for Host {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
}

impl HasLimits for P1Host {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
}

/// Installs the memory limiter and the epoch callback (CPU metering, throttling, kill switch).
pub(crate) fn configure_store<T: HasLimits>(store: &mut Store<T>) {
    store.limiter(|t| &mut t.limits().limiter);
    store.epoch_deadline_callback(|mut ctx| {
        let meter = ctx.data_mut().limits().meter.clone();
        if meter.is_killed() {
            return Err(wasmtime::Error::new(Killed));
        }
        match meter.checkpoint() {
            Some(until) => Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                    until,
                ))),
            )),
            None => Ok(UpdateDeadline::Yield(1)),
        }
    });
    store.set_epoch_deadline(1);
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// Routes a guest's outgoing HTTP requests through the pod network: siblings and pods of this
/// node in-process, Services through the node's router, the rest over the network.
pub(crate) struct PodHooks {
    pub(crate) network: Network,
    pub(crate) pod: Weak<dyn PodSandbox>,
    /// The pod's outgoing request cap and rate.
    pub(crate) guard: Arc<PodGuard>,
    /// The container sending (for the limit events).
    pub(crate) container: String,
}

/// `options` with the node's timeout for each one the guest left unset.
fn with_default_timeouts(
    options: Option<wasmtime_wasi_http::RequestOptions>,
    timeout: std::time::Duration,
) -> wasmtime_wasi_http::RequestOptions {
    let mut o = options.unwrap_or_default();
    o.connect_timeout.get_or_insert(timeout);
    o.first_byte_timeout.get_or_insert(timeout);
    o.between_bytes_timeout.get_or_insert(timeout);
    o
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

fn to_wasi_error(e: BoxError) -> wasmtime_wasi_http::Error {
    match e.downcast::<wasmtime_wasi_http::Error>() {
        Ok(e) => *e,
        Err(e) => wasmtime_wasi_http::Error::InternalError(Some(e.to_string())),
    }
}

/// Maps a runtime error of an in-process call to the error a guest's outgoing call sees.
fn local_error(e: crate::Error) -> wasmtime_wasi_http::Error {
    match e {
        crate::Error::UnknownPort { .. } | crate::Error::ContainerState { .. } => {
            wasmtime_wasi_http::Error::ConnectionRefused
        }
        crate::Error::PodRemoved(_) => wasmtime_wasi_http::Error::DestinationUnavailable,
        e => wasmtime_wasi_http::Error::InternalError(Some(e.to_string())),
    }
}

type DoneFuture = Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

fn done() -> DoneFuture {
    Box::new(async { Ok(()) })
}

impl WasiHttpHooks for PodHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        // The pod's cap on requests in flight, then its rate: the request waits for its turn
        // (the guest's future is not ready meanwhile), holding its place until the answer.
        let (permit, wait) = match self.guard.outgoing(&self.container) {
            Ok(admitted) => admitted,
            Err(()) => {
                return Box::new(async { Err(wasmtime_wasi_http::Error::ConnectionLimitReached) });
            }
        };
        let send = self.route(request, options);
        Box::new(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let answer = Box::into_pin(send).await;
            drop(permit);
            answer
        })
    }
}

impl PodHooks {
    /// Sends `request` where the pod network routes it.
    fn route(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
    ) -> SendFuture {
        let options = Some(with_default_timeouts(
            options,
            self.guard.limits.outgoing_timeout,
        ));
        let from = self.pod.upgrade();
        let mut request = request;
        // The request the guest is serving, continued: its span is the parent of this call
        // unless the guest propagated a context of its own.
        skiff_telemetry::trace::inject_current_if_absent(request.headers_mut());
        let request = request.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync());
        match self.network.resolve(from.as_ref(), request) {
            Route::Local { pod, port, req } => Box::new(async move {
                let resp = pod.handle_http(port, req).await.map_err(local_error)?;
                let resp = resp.map(|b| b.map_err(to_wasi_error).boxed_unsync());
                Ok((resp, done()))
            }),
            Route::Routed(fut) => Box::new(async move {
                let resp = fut.await;
                if let Some(why) = crate::network::refused(&resp) {
                    tracing::debug!(reason = %why, "outgoing request refused");
                    return Err(wasmtime_wasi_http::Error::ConnectionRefused);
                }
                Ok((
                    resp.map(|b| b.map_err(to_wasi_error).boxed_unsync()),
                    done(),
                ))
            }),
            Route::External(req) => Box::new(async move {
                let request = req.map(|b| b.map_err(to_wasi_error).boxed_unsync());
                let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
                let io: DoneFuture = Box::new(io);
                Ok((res.map(BodyExt::boxed_unsync), io))
            }),
        }
    }
}

/// A container's stdout or stderr, writing into its current run's log.
#[derive(Clone)]
pub(crate) struct LogOutput {
    pub(crate) log: Arc<RunLog>,
    pub(crate) stream: LogStreamKind,
    /// The run's log rate limit (shared by stdout and stderr).
    pub(crate) limit: Option<Arc<LogLimiter>>,
}

impl LogOutput {
    fn write_limited(&self, bytes: &[u8]) {
        if self.limit.as_ref().is_none_or(|l| l.admit(bytes.len())) {
            self.log.write(self.stream, bytes);
        }
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for LogOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for LogOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_limited(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for LogOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_limited(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
