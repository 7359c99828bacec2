//! Group commit for the event log: appends from concurrent requests are gathered and committed in
//! one transaction, so the durable write (one fsync) is shared. A request's future resolves only
//! after its event is committed.
//!
//! Each request may carry a payload (the server passes the already parsed event). After a commit
//! the newly stored events, with their ids and payloads, go to an optional [`Sink`] in id order,
//! so a consumer can use them without reading them back. The sink is bounded and never waited
//! on: when it is full the batch is dropped there and the sink's `lagged` flag is raised, telling
//! the consumer to read the log from the database instead.

use crate::{Appended, NewEvent, Result, Store, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Request<T> = (NewEvent, T, oneshot::Sender<Result<Appended>>);

/// An event as committed to the log, handed to the sink.
#[derive(Debug)]
pub struct Committed<T> {
    pub id: i64,
    pub event: NewEvent,
    pub payload: T,
}

/// Where committed events go: batches in commit (and id) order.
pub struct Sink<T> {
    tx: mpsc::Sender<Vec<Committed<T>>>,
    lagged: Arc<AtomicBool>,
}

/// The consumer's side of a [`Sink`].
pub struct SinkReceiver<T> {
    pub rx: mpsc::Receiver<Vec<Committed<T>>>,
    lagged: Arc<AtomicBool>,
}

impl<T> SinkReceiver<T> {
    /// True (once, then reset) when a batch was dropped because the channel was full since the
    /// last call: the consumer must catch up from the database. Checked after receiving a batch,
    /// it also covers every batch dropped before that one.
    pub fn take_lagged(&self) -> bool {
        self.lagged.swap(false, Ordering::SeqCst)
    }
}

/// A sink holding up to `batches` committed batches.
pub fn sink<T>(batches: usize) -> (Sink<T>, SinkReceiver<T>) {
    let (tx, rx) = mpsc::channel(batches.max(1));
    let lagged = Arc::new(AtomicBool::new(false));
    (
        Sink {
            tx,
            lagged: lagged.clone(),
        },
        SinkReceiver { rx, lagged },
    )
}

#[derive(Debug)]
pub struct Appender<T = ()> {
    tx: mpsc::Sender<Request<T>>,
}

impl<T> Clone for Appender<T> {
    fn clone(&self) -> Self {
        Appender {
            tx: self.tx.clone(),
        }
    }
}

impl Appender<()> {
    /// Starts the writer task. `max_batch` bounds one transaction.
    pub fn spawn(store: Store, max_batch: usize) -> Appender<()> {
        Appender::spawn_with_sink(store, max_batch, None)
    }
}

impl<T: Send + 'static> Appender<T> {
    /// Starts the writer task, handing what it commits to `sink` when given.
    pub fn spawn_with_sink(store: Store, max_batch: usize, sink: Option<Sink<T>>) -> Appender<T> {
        let (tx, mut rx) = mpsc::channel::<Request<T>>(max_batch * 4);
        tokio::spawn(async move {
            let mut batch: Vec<Request<T>> = Vec::with_capacity(max_batch);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (events, rest): (Vec<NewEvent>, Vec<_>) = batch
                    .drain(..)
                    .map(|(event, payload, reply)| (event, (payload, reply)))
                    .unzip();
                let started = std::time::Instant::now();
                let appended = store.append_events(&events).await;
                // Waiting for the writer, writing and the fsync: what every acknowledgement in
                // the batch waited for (a slow disk shows here first).
                metrics::histogram!("callbridge_event_log_append_seconds")
                    .record(started.elapsed().as_secs_f64());
                match appended {
                    Ok(results) => {
                        let mut committed = Vec::new();
                        for ((event, (payload, reply)), result) in
                            events.into_iter().zip(rest).zip(results)
                        {
                            let _ = reply.send(Ok(result));
                            if let (Some(_), Appended::Stored(id)) = (&sink, result) {
                                committed.push(Committed { id, event, payload });
                            }
                        }
                        if let Some(sink) = &sink {
                            if !committed.is_empty() {
                                committed.sort_unstable_by_key(|c| c.id);
                                if sink.tx.try_send(committed).is_err() {
                                    sink.lagged.store(true, Ordering::SeqCst);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, events = events.len(), "event log append failed");
                        // Whatever the database kept, the consumer finds it there.
                        if let Some(sink) = &sink {
                            sink.lagged.store(true, Ordering::SeqCst);
                        }
                        let message = e.to_string();
                        for (_, reply) in rest {
                            let _ = reply.send(Err(StoreError::AppendFailed(message.clone())));
                        }
                    }
                }
            }
        });
        Appender { tx }
    }

    /// Appends one event; resolves once it is committed (or recognised as a duplicate).
    pub async fn append_with(&self, event: NewEvent, payload: T) -> Result<Appended> {
        let (reply, response) = oneshot::channel();
        self.tx
            .send((event, payload, reply))
            .await
            .map_err(|_| StoreError::AppenderStopped)?;
        response.await.map_err(|_| StoreError::AppenderStopped)?
    }
}

impl Appender<()> {
    /// Appends one event; resolves once it is committed (or recognised as a duplicate).
    pub async fn append(&self, event: NewEvent) -> Result<Appended> {
        self.append_with(event, ()).await
    }
}
