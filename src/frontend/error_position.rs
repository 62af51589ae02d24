//! Error positions of rewritten statements. A server error's position (`P`)
//! counts characters of the query text the server got; for a statement the
//! proxy rewrote, that is not the text the client sent, and a client would
//! put its caret in the wrong place. So per batch the session notes which
//! statements it sent rewritten, and an error of that batch reports the
//! position as Postgres reports one inside a statement it generated itself:
//! internal position and internal query (see
//! [`crate::protocol::messages::internal_error_position`]).

use std::collections::VecDeque;

/// What to do with the position of an error in one batch.
#[derive(Debug, PartialEq, Eq)]
pub enum PositionFix<'a> {
    /// No statement of the batch was rewritten: the position is the client's.
    Keep,
    /// The batch's only statement was sent as this text.
    Internal(&'a str),
    /// Several statements, some rewritten: which one failed is not known here.
    Drop,
}

/// The statements (simple Query texts and Parse messages) of one batch.
#[derive(Debug)]
struct Batch {
    /// The batch (the session's count of requests sent when it began).
    id: u64,
    /// Statements sent in it.
    count: u32,
    /// Whether any of them was rewritten.
    rewritten: bool,
    /// The text the first one was sent as, when it was rewritten.
    first_text: Option<String>,
}

/// The statements of the batches sent and not yet answered.
#[derive(Debug, Default)]
pub struct BatchStatements {
    batches: VecDeque<Batch>,
}

impl BatchStatements {
    /// A statement was sent in batch `id`: rewritten to `text`, or as the
    /// client wrote it (`None`). Batches before `answered` are forgotten.
    pub fn note(&mut self, id: u64, text: Option<String>, answered: u64) {
        while self.batches.front().is_some_and(|b| b.id < answered) {
            self.batches.pop_front();
        }
        if self.batches.back().is_none_or(|b| b.id != id) {
            self.batches.push_back(Batch {
                id,
                count: 0,
                rewritten: false,
                first_text: None,
            });
        }
        let Some(b) = self.batches.back_mut() else {
            return;
        };
        b.count += 1;
        if let Some(text) = text {
            b.rewritten = true;
            if b.count == 1 {
                b.first_text = Some(text);
            }
        }
    }

    /// How an error answering batch `id` reports its position.
    pub fn fix_for(&self, id: u64) -> PositionFix<'_> {
        match self.batches.iter().find(|b| b.id == id) {
            Some(b) if b.rewritten => match (&b.first_text, b.count) {
                (Some(text), 1) => PositionFix::Internal(text),
                _ => PositionFix::Drop,
            },
            _ => PositionFix::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rewritten_statement_is_internal() {
        let mut b = BatchStatements::default();
        assert_eq!(b.fix_for(0), PositionFix::Keep);
        b.note(3, Some("SELECT x FROM t WHERE tenant_id = 'a'".into()), 0);
        assert_eq!(
            b.fix_for(3),
            PositionFix::Internal("SELECT x FROM t WHERE tenant_id = 'a'")
        );
        // Another batch's error is not this statement's.
        assert_eq!(b.fix_for(4), PositionFix::Keep);
    }

    #[test]
    fn plain_statements_keep_their_position() {
        let mut b = BatchStatements::default();
        b.note(1, None, 0);
        b.note(1, None, 0);
        assert_eq!(b.fix_for(1), PositionFix::Keep);
    }

    #[test]
    fn mixed_batches_drop_it() {
        let mut b = BatchStatements::default();
        b.note(2, None, 0);
        b.note(2, Some("rewritten".into()), 0);
        assert_eq!(b.fix_for(2), PositionFix::Drop);
        let mut b = BatchStatements::default();
        b.note(2, Some("rewritten".into()), 0);
        b.note(2, Some("another".into()), 0);
        assert_eq!(b.fix_for(2), PositionFix::Drop);
    }

    #[test]
    fn pipelined_batches_stay_apart_until_answered() {
        let mut b = BatchStatements::default();
        b.note(5, None, 5);
        b.note(5, Some("a".into()), 5);
        b.note(6, Some("b".into()), 5);
        assert_eq!(b.fix_for(6), PositionFix::Internal("b"));
        assert_eq!(b.fix_for(5), PositionFix::Drop);
        // Batch 5 and 6 answered: both forgotten at the next note.
        b.note(7, None, 7);
        assert_eq!(b.fix_for(5), PositionFix::Keep);
        assert_eq!(b.fix_for(6), PositionFix::Keep);
        assert_eq!(b.fix_for(7), PositionFix::Keep);
    }
}
