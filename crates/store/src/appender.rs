//! Group commit for the event log: appends from concurrent requests are gathered and committed in
//! one transaction, so the durable write (one fsync) is shared. A request's future resolves only
//! after its event is committed.

use crate::{Appended, NewEvent, Result, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

type Request = (NewEvent, oneshot::Sender<Result<Appended>>);

#[derive(Clone, Debug)]
pub struct Appender {
    tx: mpsc::Sender<Request>,
}

impl Appender {
    /// Starts the writer task. `max_batch` bounds one transaction.
    pub fn spawn(store: Store, max_batch: usize) -> Appender {
        let (tx, mut rx) = mpsc::channel::<Request>(max_batch * 4);
        tokio::spawn(async move {
            let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let events: Vec<NewEvent> = batch.iter().map(|(e, _)| e.clone()).collect();
                match store.append_events(&events).await {
                    Ok(results) => {
                        for ((_, reply), result) in batch.drain(..).zip(results) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, events = batch.len(), "event log append failed");
                        let message = e.to_string();
                        for (_, reply) in batch.drain(..) {
                            let _ = reply.send(Err(StoreError::Corrupt(format!(
                                "append failed: {message}"
                            ))));
                        }
                    }
                }
            }
        });
        Appender { tx }
    }

    /// Appends one event; resolves once it is committed (or recognised as a duplicate).
    pub async fn append(&self, event: NewEvent) -> Result<Appended> {
        let (reply, response) = oneshot::channel();
        self.tx
            .send((event, reply))
            .await
            .map_err(|_| StoreError::AppenderStopped)?;
        response.await.map_err(|_| StoreError::AppenderStopped)?
    }
}
