//! Acting on what the endpoint reports after each turn: sending what it has, closing the
//! sockets of ended transfers and logging their reports, logging refusals, and committing
//! uploads (in memory at once, or through the spool writer's thread).

use std::time::{Instant, SystemTime};

use super::{Server, logging};
use crate::endpoint::EndpointEvent;

impl Server {
    /// Sends what the endpoint has to send, then acts on what it reports (and again,
    /// when an upload stored in memory has its final ACK to send).
    pub(super) fn flush(&mut self) {
        loop {
            self.transmit();
            let mut again = false;
            while let Some(event) = self.endpoint.poll_event() {
                match event {
                    EndpointEvent::Ended {
                        handle,
                        report,
                        client,
                        applied,
                    } => {
                        self.close_transfer_socket(handle);
                        // (No lookup without a spool: this runs for every transfer.)
                        let spooled = (!self.spooled.is_empty())
                            .then(|| self.spooled.remove(&handle))
                            .flatten();
                        logging::log_report(&report, client, &applied, spooled.as_deref());
                    }
                    EndpointEvent::Refused(record) => logging::log_refusal(&record),
                    EndpointEvent::Suppressed(count) => {
                        log::info!("{count} more refusals were not logged (over the log's rate)");
                    }
                    EndpointEvent::Commit(commit) => {
                        let commit = match &mut self.writer {
                            Some(writer) => match writer.submit(commit) {
                                None => continue,
                                Some(commit) => {
                                    log::error!(
                                        "no spool writer: upload {} kept in memory only \
                                         (not in {})",
                                        commit.permit.name(),
                                        writer.spool().root().display()
                                    );
                                    commit
                                }
                            },
                            None => commit,
                        };
                        // The result shows in the transfer's report.
                        let _ =
                            self.endpoint
                                .commit(Instant::now(), commit, Some(SystemTime::now()));
                        again = true;
                    }
                }
            }
            if !again {
                return;
            }
        }
    }
}
