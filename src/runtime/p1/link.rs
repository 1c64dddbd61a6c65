//! Linking: every `wasi_snapshot_preview1` function into a wasmtime linker, with the guest's memory.

#[allow(unused_imports)]
use super::*;

/// Runs `f` with the guest's memory and the context; turns its result into an errno.
pub(super) fn with_ctx<T: P1View, R>(
    caller: &mut Caller<'_, T>,
    f: impl FnOnce(&mut P1Ctx, &mut Mem) -> abi::Result<R>,
) -> wasmtime::Result<abi::Result<R>> {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return Err(wasmtime::format_err!(
            "the module exports no memory named `memory`"
        ));
    };
    let (data, state) = memory.data_and_store_mut(caller);
    Ok(f(state.p1(), &mut Mem(data)))
}

pub(super) fn errno<R>(result: wasmtime::Result<abi::Result<R>>) -> wasmtime::Result<i32> {
    Ok(match result? {
        Ok(_) => 0,
        Err(e) => i32::from(e.0),
    })
}

/// Links every `wasi_snapshot_preview1` function into `linker`.
pub fn add_to_linker<T: P1View>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    // A synchronous host function: `sync!(name, |ctx, mem, arg: ty, ...| body)`; `body` is an `abi::Result`.
    macro_rules! sync {
        ($name:literal, |$ctx:ident, $mem:ident $(, $arg:ident : $ty:ty)*| $body:expr) => {
            linker.func_wrap(
                MODULE,
                $name,
                |mut caller: Caller<'_, T>, $($arg: $ty),*| -> wasmtime::Result<i32> {
                    #[allow(unused_variables)]
                    errno(with_ctx(&mut caller, |$ctx, $mem| $body))
                },
            )?;
        };
    }
    // Path arguments arrive as (pointer, length): read them before the body runs.
    // An absolute path escapes the directory it is relative to: refused, as wasmtime's host refuses it
    // (`ERRNO_PERM`), also as a symbolic link's target.
    macro_rules! path {
        ($mem:ident, $ptr:ident, $len:ident) => {{
            let path = $mem.str($ptr, $len)?;
            if path.starts_with('/') {
                return Err(Errno::PERM);
            }
            path.to_owned()
        }};
    }

    sync!("args_sizes_get", |ctx, mem, count: u32, size: u32| {
        P1Ctx::strings_sizes(&ctx.args, mem, count, size)
    });
    sync!("args_get", |ctx, mem, argv: u32, buf: u32| {
        P1Ctx::strings_get(&ctx.args, mem, argv, buf)
    });
    sync!("environ_sizes_get", |ctx, mem, count: u32, size: u32| {
        P1Ctx::strings_sizes(&ctx.env, mem, count, size)
    });
    sync!("environ_get", |ctx, mem, environ: u32, buf: u32| {
        P1Ctx::strings_get(&ctx.env, mem, environ, buf)
    });
    sync!("clock_res_get", |ctx, mem, clock: u32, out: u32| {
        ctx.now(clock)?;
        mem.put_u64(out, 1)
    });
    sync!("clock_time_get", |ctx,
                             mem,
                             clock: u32,
                             _precision: u64,
                             out: u32| {
        let now = ctx.now(clock)?;
        mem.put_u64(out, now)
    });
    sync!("random_get", |ctx, mem, buf: u32, len: u32| {
        getrandom::fill(mem.slice_mut(buf, len)?).map_err(|_| Errno::IO)
    });

    sync!("fd_advise", |ctx,
                        mem,
                        fd: u32,
                        offset: u64,
                        len: u64,
                        advice: u32| {
        ctx.fd_advise(
            fd,
            offset,
            len,
            u8::try_from(advice).map_err(|_| Errno::INVAL)?,
        )
    });
    sync!("fd_allocate", |ctx, mem, fd: u32, offset: u64, len: u64| {
        ctx.fd_allocate(fd, offset, len)
    });
    sync!("fd_close", |ctx, mem, fd: u32| ctx.fd_close(fd));
    sync!("fd_datasync", |ctx, mem, fd: u32| ctx.fd_sync(fd));
    sync!("fd_sync", |ctx, mem, fd: u32| ctx.fd_sync(fd));
    sync!("fd_fdstat_get", |ctx, mem, fd: u32, out: u32| ctx
        .fd_fdstat_get(mem, fd, out));
    sync!("fd_fdstat_set_flags", |ctx, mem, fd: u32, flags: u32| {
        ctx.fd_fdstat_set_flags(fd, u16::try_from(flags).map_err(|_| Errno::INVAL)?)
    });
    sync!(
        "fd_fdstat_set_rights",
        |ctx, mem, fd: u32, base: u64, inheriting: u64| {
            ctx.fd_fdstat_set_rights(fd, base, inheriting)
        }
    );
    sync!("fd_filestat_get", |ctx, mem, fd: u32, out: u32| ctx
        .fd_filestat_get(mem, fd, out));
    sync!("fd_filestat_set_size", |ctx, mem, fd: u32, size: u64| ctx
        .fd_filestat_set_size(fd, size));
    sync!(
        "fd_filestat_set_times",
        |ctx, mem, fd: u32, atim: u64, mtim: u64, fst: u32| {
            ctx.fd_filestat_set_times(fd, atim, mtim, fst as u16)
        }
    );
    sync!("fd_pread", |ctx,
                       mem,
                       fd: u32,
                       iovs: u32,
                       n: u32,
                       offset: u64,
                       out: u32| {
        let read = ctx.read_file(mem, fd, iovs, n, Some(offset))?;
        mem.put_u32(out, read)
    });
    sync!("fd_pwrite", |ctx,
                        mem,
                        fd: u32,
                        iovs: u32,
                        n: u32,
                        offset: u64,
                        out: u32| {
        let written = ctx.write_file(mem, fd, iovs, n, Some(offset))?;
        mem.put_u32(out, written)
    });
    sync!("fd_prestat_get", |ctx, mem, fd: u32, out: u32| ctx
        .fd_prestat_get(mem, fd, out));
    sync!(
        "fd_prestat_dir_name",
        |ctx, mem, fd: u32, path: u32, len: u32| { ctx.fd_prestat_dir_name(mem, fd, path, len) }
    );
    sync!("fd_readdir", |ctx,
                         mem,
                         fd: u32,
                         buf: u32,
                         len: u32,
                         cookie: u64,
                         out: u32| {
        let used = ctx.fd_readdir(mem, fd, buf, len, cookie)?;
        mem.put_u32(out, used)
    });
    sync!("fd_renumber", |ctx, mem, from: u32, to: u32| ctx
        .fd_renumber(from, to));
    sync!("fd_seek", |ctx,
                      mem,
                      fd: u32,
                      offset: i64,
                      whence: u32,
                      out: u32| {
        let pos = ctx.fd_seek(fd, offset, u8::try_from(whence).map_err(|_| Errno::INVAL)?)?;
        mem.put_u64(out, pos)
    });
    sync!("fd_tell", |ctx, mem, fd: u32, out: u32| {
        let pos = ctx.fd_tell(fd)?;
        mem.put_u64(out, pos)
    });

    sync!(
        "path_create_directory",
        |ctx, mem, fd: u32, p: u32, pl: u32| {
            let path = path!(mem, p, pl);
            let dir = ctx.dir_ino(fd)?;
            ctx.fs().mkdir(dir, &path).map(drop).map_err(Errno::from)
        }
    );
    sync!(
        "path_filestat_get",
        |ctx, mem, fd: u32, flags: u32, p: u32, pl: u32, out: u32| {
            let path = path!(mem, p, pl);
            ctx.path_filestat_get(mem, fd, flags, &path, out)
        }
    );
    sync!(
        "path_filestat_set_times",
        |ctx, mem, fd: u32, flags: u32, p: u32, pl: u32, atim: u64, mtim: u64, fst: u32| {
            let path = path!(mem, p, pl);
            ctx.path_filestat_set_times(fd, flags, &path, atim, mtim, fst as u16)
        }
    );
    sync!("path_link", |ctx,
                        mem,
                        old_fd: u32,
                        flags: u32,
                        op: u32,
                        opl: u32,
                        new_fd: u32,
                        np: u32,
                        npl: u32| {
        let (old, new) = (path!(mem, op, opl), path!(mem, np, npl));
        let (from, to) = (ctx.dir_ino(old_fd)?, ctx.dir_ino(new_fd)?);
        let follow = flags & abi::LOOKUP_SYMLINK_FOLLOW != 0;
        Ok(ctx.fs().link(from, &old, to, &new, follow)?)
    });
    sync!("path_open", |ctx,
                        mem,
                        fd: u32,
                        lookup: u32,
                        p: u32,
                        pl: u32,
                        oflags: u32,
                        base: u64,
                        inheriting: u64,
                        fdflags: u32,
                        out: u32| {
        let path = path!(mem, p, pl);
        mem.slice(out, 4)?;
        let opened = ctx.path_open(
            fd,
            lookup,
            &path,
            oflags as u16,
            base,
            inheriting,
            fdflags as u16,
        )?;
        mem.put_u32(out, opened)
    });
    sync!("path_readlink", |ctx,
                            mem,
                            fd: u32,
                            p: u32,
                            pl: u32,
                            buf: u32,
                            len: u32,
                            out: u32| {
        let path = path!(mem, p, pl);
        let used = ctx.path_readlink(mem, fd, &path, buf, len)?;
        mem.put_u32(out, used)
    });
    sync!(
        "path_remove_directory",
        |ctx, mem, fd: u32, p: u32, pl: u32| {
            let path = path!(mem, p, pl);
            let dir = ctx.dir_ino(fd)?;
            Ok(ctx.fs().rmdir(dir, &path)?)
        }
    );
    sync!("path_rename", |ctx,
                          mem,
                          old_fd: u32,
                          op: u32,
                          opl: u32,
                          new_fd: u32,
                          np: u32,
                          npl: u32| {
        let (old, new) = (path!(mem, op, opl), path!(mem, np, npl));
        let (from, to) = (ctx.dir_ino(old_fd)?, ctx.dir_ino(new_fd)?);
        Ok(ctx.fs().rename(from, &old, to, &new)?)
    });
    sync!("path_symlink", |ctx,
                           mem,
                           op: u32,
                           opl: u32,
                           fd: u32,
                           np: u32,
                           npl: u32| {
        let (target, path) = (path!(mem, op, opl), path!(mem, np, npl));
        let dir = ctx.dir_ino(fd)?;
        Ok(ctx.fs().symlink(&target, dir, &path)?)
    });
    sync!("path_unlink_file", |ctx, mem, fd: u32, p: u32, pl: u32| {
        let path = path!(mem, p, pl);
        let dir = ctx.dir_ino(fd)?;
        Ok(ctx.fs().unlink(dir, &path)?)
    });

    sync!("proc_raise", |ctx, mem, _signal: u32| Err::<(), _>(
        Errno::NOTSUP
    ));
    sync!("sock_shutdown", |ctx, mem, fd: u32, how: u32| ctx
        .sock_shutdown(fd, how));

    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_: Caller<'_, T>, status: u32| -> wasmtime::Result<()> {
            Err(wasmtime_wasi::I32Exit(status as i32).into())
        },
    )?;

    linker.func_wrap_async(MODULE, "sched_yield", |_: Caller<'_, T>, (): ()| {
        Box::new(async {
            tokio::task::yield_now().await;
            Ok(0i32)
        })
    })?;

    // Reads and writes start synchronously and wait only on a stream (see `transfer`).
    linker.func_wrap_async(
        MODULE,
        "fd_read",
        |mut caller: Caller<'_, T>, (fd, iovs, n, out): (u32, u32, u32, u32)| {
            Box::new(async move {
                transfer(&mut caller, (iovs, n, out), None, |ctx, mem| {
                    ctx.fd_read(mem, fd, iovs, n)
                })
                .await
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, T>, (fd, iovs, n, out): (u32, u32, u32, u32)| {
            Box::new(async move {
                transfer(&mut caller, (iovs, n, out), None, |ctx, mem| {
                    ctx.fd_write(mem, fd, iovs, n)
                })
                .await
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "sock_recv",
        |mut caller: Caller<'_, T>,
         (fd, iovs, n, riflags, out, roflags): (u32, u32, u32, u32, u32, u32)| {
            Box::new(async move {
                transfer(&mut caller, (iovs, n, out), Some(roflags), |ctx, mem| {
                    ctx.sock_recv(mem, fd, iovs, n, riflags)
                })
                .await
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "sock_send",
        |mut caller: Caller<'_, T>, (fd, iovs, n, siflags, out): (u32, u32, u32, u32, u32)| {
            Box::new(async move {
                transfer(&mut caller, (iovs, n, out), None, |ctx, mem| {
                    ctx.sock_send(mem, fd, iovs, n, siflags)
                })
                .await
            })
        },
    )?;

    linker.func_wrap_async(
        MODULE,
        "sock_accept",
        |mut caller: Caller<'_, T>, (fd, flags, out): (u32, u32, u32)| {
            Box::new(async move {
                let (listener, flags) =
                    match with_ctx(&mut caller, |ctx, mem| ctx.sock_accept(mem, fd, flags, out))? {
                        Ok(Accept::Done) => return Ok(0),
                        Ok(Accept::Wait { listener, flags }) => (listener, flags),
                        Err(e) => return Ok(i32::from(e.0)),
                    };
                // Waits holding only the listener, never the context or guest memory.
                let accepted = listener.accept().await;
                errno(with_ctx(&mut caller, |ctx, mem| {
                    let socket = accepted.map_err(|_| Errno::INVAL)?;
                    ctx.add_socket(mem, socket, flags, out)
                }))
            })
        },
    )?;

    linker.func_wrap_async(
        MODULE,
        "poll_oneoff",
        |mut caller: Caller<'_, T>, (subs_ptr, events_ptr, n, out): (u32, u32, u32, u32)| {
            Box::new(async move {
                if n == 0 {
                    return Ok(i32::from(Errno::INVAL.0));
                }
                let parsed = with_ctx(&mut caller, |ctx, mem| {
                    mem.slice(events_ptr, n.checked_mul(32).ok_or(Errno::FAULT)?)?;
                    mem.slice(out, 4)?;
                    let subs = ctx.parse_subscriptions(mem, subs_ptr, n)?;
                    let (interests, waits_on_stdin) = ctx.interests(&subs);
                    Ok((subs, interests, waits_on_stdin, ctx.stdin.clone()))
                })?;
                let (subs, interests, waits_on_stdin, stdin) = match parsed {
                    Ok(parsed) => parsed,
                    Err(e) => return Ok(i32::from(e.0)),
                };
                loop {
                    let events = with_ctx(&mut caller, |ctx, _| {
                        Ok(ctx.poll_ready(&subs, Instant::now()))
                    })?
                    .expect("infallible");
                    if !events.is_empty() {
                        return errno(with_ctx(&mut caller, |_, mem| {
                            for (i, event) in events.iter().enumerate() {
                                mem.write(events_ptr + 32 * i as u32, &event.bytes())?;
                            }
                            mem.put_u32(out, events.len() as u32)
                        }));
                    }
                    // Nothing ready: wait for the earliest deadline, stdin or a socket, whichever comes first.
                    let deadline = subs
                        .iter()
                        .filter_map(|s| match s {
                            Subscription::Clock { deadline, .. } => Some(*deadline),
                            _ => None,
                        })
                        .min();
                    let sleep = async {
                        match deadline {
                            Some(at) => tokio::time::sleep_until(at.into()).await,
                            None => std::future::pending().await,
                        }
                    };
                    let input = async {
                        if waits_on_stdin {
                            stdin.wait_ready().await
                        } else {
                            std::future::pending().await
                        }
                    };
                    tokio::select! {
                        () = sleep => {}
                        () = input => {}
                        () = net::any_ready(&interests) => {}
                    }
                }
            })
        },
    )?;
    spawn::add_to_linker(linker)?;
    Ok(())
}

/// Runs a read or write. `start` answers at once or says what to wait for; the wait holds neither the context
/// nor guest memory. Data read goes into the `iovs` array, the byte count to `out`, and for `sock_recv` the
/// output flags (always 0: stream sockets never truncate) to `roflags`.
pub(super) async fn transfer<T: P1View>(
    caller: &mut Caller<'_, T>,
    (iovs, n, out): (u32, u32, u32),
    roflags: Option<u32>,
    start: impl FnOnce(&mut P1Ctx, &mut Mem) -> abi::Result<Io>,
) -> wasmtime::Result<i32> {
    let started = with_ctx(caller, |ctx, mem| {
        // Results have somewhere to go before anything is consumed.
        mem.slice(out, 4)?;
        if let Some(at) = roflags {
            mem.slice(at, 2)?;
        }
        start(ctx, mem)
    })?;
    let done = match started {
        Ok(io) => io.finish().await,
        Err(e) => Err(e),
    };
    let done = match done {
        Ok(done) => done,
        Err(e) => return Ok(i32::from(e.0)),
    };
    errno(with_ctx(caller, |_, mem| {
        let count = match done {
            Transferred::Count(count) => count,
            // The iovecs were checked before the read; memory never shrinks, so this copy fits.
            Transferred::Data(data) => mem.scatter(&mem.iovecs(iovs, n)?, &data)? as u32,
        };
        mem.put_u32(out, count)?;
        match roflags {
            Some(at) => mem.write(at, &0u16.to_le_bytes()),
            None => Ok(()),
        }
    }))
}
