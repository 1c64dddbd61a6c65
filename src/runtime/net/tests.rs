use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use super::*;

const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn bytes_flow_both_ways_and_closing_ends_the_stream() {
    let listener = Listener::new(4);
    let mut host = listener.connect().await.unwrap();
    let guest = listener.try_accept().unwrap().expect("queued");
    host.write_all(b"ping").await.unwrap();
    let got = guest.handle().recv(16, RecvFlags::default()).await.unwrap();
    assert_eq!(got, b"ping");
    assert_eq!(guest.handle().send(b"pong", false).await.unwrap(), 4);
    drop(guest);
    let mut reply = Vec::new();
    host.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"pong", "the reply, then end of stream");
    let broken = host.write_all(b"more").await.unwrap_err();
    assert_eq!(broken.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn a_dropped_host_end_is_end_of_stream_and_a_broken_pipe_for_the_guest() {
    let listener = Listener::new(1);
    let mut host = listener.connect().await.unwrap();
    let guest = listener.try_accept().unwrap().unwrap();
    host.write_all(b"last words").await.unwrap();
    drop(host);
    let socket = guest.handle();
    let ready = socket.readable().unwrap();
    assert_eq!((ready.bytes, ready.hangup), (10, true));
    let flags = RecvFlags::default();
    assert_eq!(socket.recv(64, flags).await.unwrap(), b"last words");
    assert!(socket.recv(64, flags).await.unwrap().is_empty());
    let err = socket.send(b"hello?", false).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    assert_eq!(socket.writable(), Some(Ready::HANGUP));
}

#[tokio::test]
async fn a_full_pipe_blocks_the_writer_until_the_reader_drains_it() {
    let listener = Listener::new(1);
    let mut host = listener.connect().await.unwrap();
    let guest = listener.try_accept().unwrap().unwrap();
    let socket = guest.handle().clone();
    let big = vec![7u8; BUFFER + 10];
    assert_eq!(
        socket.send(&big, true).await.unwrap(),
        BUFFER,
        "as much as fits"
    );
    assert_eq!(socket.writable(), None);
    let err = socket.send(b"x", true).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    let writer = tokio::spawn(async move { socket.send(&[1u8; 100], false).await });
    let mut sink = vec![0u8; BUFFER + 100];
    timeout(LONG, host.read_exact(&mut sink))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(timeout(LONG, writer).await.unwrap().unwrap().unwrap(), 100);
}

#[tokio::test]
async fn peek_and_wait_all() {
    let listener = Listener::new(1);
    let mut host = listener.connect().await.unwrap();
    let guest = listener.try_accept().unwrap().unwrap();
    let socket = guest.handle().clone();
    host.write_all(b"abc").await.unwrap();
    let peek = RecvFlags {
        peek: true,
        ..RecvFlags::default()
    };
    assert_eq!(socket.recv(2, peek).await.unwrap(), b"ab");
    let wait_all = RecvFlags {
        wait_all: true,
        ..RecvFlags::default()
    };
    let reader = tokio::spawn(async move { socket.recv(6, wait_all).await });
    tokio::task::yield_now().await;
    host.write_all(b"def").await.unwrap();
    let got = timeout(LONG, reader).await.unwrap().unwrap().unwrap();
    assert_eq!(got, b"abcdef");
    let nonblocking = RecvFlags {
        nonblocking: true,
        ..RecvFlags::default()
    };
    let err = guest.handle().recv(1, nonblocking).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
}

#[tokio::test]
async fn connect_waits_while_the_backlog_is_full() {
    let listener = Listener::new(1);
    let _first = listener.connect().await.unwrap();
    let waiting = tokio::spawn({
        let listener = listener.clone();
        async move { listener.connect().await.map(drop) }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    assert_eq!(listener.queued(), 1);
    let _accepted = listener.try_accept().unwrap().unwrap();
    timeout(LONG, waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(listener.queued(), 1);
}

#[tokio::test]
async fn close_refuses_queued_and_new_connections_and_ends_accept() {
    let listener = Listener::new(8);
    let mut queued = listener.connect().await.unwrap();
    let acceptor = tokio::spawn({
        let listener = listener.clone();
        async move {
            let first = listener.accept().await.map(drop);
            let second = listener.accept().await.map(drop);
            (first, second)
        }
    });
    let (first, second) = {
        // Let the acceptor take the queued connection and start waiting for the next.
        while listener.queued() > 0 {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        listener.close();
        timeout(LONG, acceptor).await.unwrap().unwrap()
    };
    assert_eq!(first, Ok(()));
    assert_eq!(second, Err(NetError::Closed));
    assert_eq!(listener.connect().await.unwrap_err(), NetError::Closed);
    assert!(listener.is_closed());
    // The accepted connection was dropped by the acceptor: end of stream.
    let mut rest = Vec::new();
    queued.read_to_end(&mut rest).await.unwrap();

    let listener = Listener::new(8);
    let mut refused = listener.connect().await.unwrap();
    listener.close();
    assert_eq!(listener.queued(), 0);
    assert_eq!(refused.read(&mut [0u8; 8]).await.unwrap(), 0);
    assert!(refused.write_all(b"GET /").await.is_err());
}

#[tokio::test]
async fn accepting_is_reported_until_the_guest_detaches() {
    let listener = Listener::new(1);
    let guest = listener.attach();
    assert!(!listener.is_accepting());
    let watcher = tokio::spawn({
        let listener = listener.clone();
        async move { listener.accepting().await }
    });
    tokio::task::yield_now().await;
    assert!(!watcher.is_finished());
    assert_eq!(guest.listener().acceptable(), None);
    timeout(LONG, watcher).await.unwrap().unwrap();
    assert!(listener.is_accepting());
    drop(guest);
    assert!(
        !listener.is_accepting(),
        "a restarted instance must accept again"
    );
}

#[tokio::test]
async fn accepted_says_whether_the_guest_took_the_connection() {
    let listener = Listener::new(4);
    let guest = listener.attach();
    assert_eq!(guest.listener().acceptable(), None, "polling is accepting");
    let conn = listener.connect().await.unwrap();
    let waiting = tokio::spawn({
        let listener = listener.clone();
        async move { conn.accepted(&listener).await.map(|()| conn) }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    let _taken = listener.try_accept().unwrap().expect("queued");
    let conn = timeout(LONG, waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(conn.accepted(&listener).await, Ok(()), "and stays so");

    // Queued when the listener closes: refused, so the request may go elsewhere.
    let queued = listener.connect().await.unwrap();
    listener.close();
    assert_eq!(queued.accepted(&listener).await, Err(NetError::Closed));

    // Queued when the instance goes away: withdrawn and refused.
    let listener = Listener::new(4);
    let guest = listener.attach();
    let _ = guest.listener().acceptable();
    let queued = listener.connect().await.unwrap();
    let waiting = tokio::spawn({
        let listener = listener.clone();
        async move { queued.accepted(&listener).await }
    });
    tokio::task::yield_now().await;
    drop(guest);
    assert_eq!(
        timeout(LONG, waiting).await.unwrap().unwrap(),
        Err(NetError::Closed)
    );
    assert_eq!(listener.queued(), 0, "withdrawn from the backlog");
}

#[tokio::test]
async fn any_ready_wakes_on_a_connection_or_data() {
    let listener = Listener::new(2);
    let interests = [Interest::Accept(listener.clone())];
    let waiter = tokio::spawn(async move { any_ready(&interests).await });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    let mut host = listener.connect().await.unwrap();
    timeout(LONG, waiter).await.unwrap().unwrap();

    let guest = listener.try_accept().unwrap().unwrap();
    let interests = [Interest::Read(guest.handle().clone())];
    let waiter = tokio::spawn(async move { any_ready(&interests).await });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    host.write_all(b"x").await.unwrap();
    timeout(LONG, waiter).await.unwrap().unwrap();
}
