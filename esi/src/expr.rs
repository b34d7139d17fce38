//! The ESI expression language of `esi:when test="..."` (ESI 1.0 section 3.3): operands are
//! variable references, `'string'` literals and numbers; operators `==`, `!=`, `<`, `<=`,
//! `>`, `>=`, `!`, `&`, `|` and parentheses, with `!` binding tightest and `|` loosest.
//! Two operands that both read as numbers compare as numbers, others as strings. A lone
//! operand is true unless it is empty, `false` or `0`.
//!
//! An expression that does not parse is an [`ExprError`]; the `when` it guards is not taken.
//! Plain logic with no I/O.

use crate::vars::{Reference, Variables};

/// Why a test expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad ESI expression at byte {at}: {reason}")]
pub struct ExprError {
    pub at: usize,
    pub reason: &'static str,
}

/// The deepest nesting of parentheses and `!` an expression may have.
const MAX_NESTING: usize = 64;

/// Evaluates `test` against `variables`.
pub fn evaluate(test: &str, variables: &Variables) -> Result<bool, ExprError> {
    let mut parser = Parser {
        text: test,
        at: 0,
        variables,
        nesting: 0,
    };
    let value = parser.or()?;
    parser.skip_space();
    if parser.at < test.len() {
        return Err(parser.error("unexpected text after the expression"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    variables: &'a Variables,
    nesting: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl<'a> Parser<'a> {
    fn error(&self, reason: &'static str) -> ExprError {
        ExprError {
            at: self.at,
            reason,
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<bool, ExprError> {
        let mut value = self.and()?;
        while self.eat("|") {
            let right = self.and()?;
            value = value || right;
        }
        Ok(value)
    }

    fn and(&mut self) -> Result<bool, ExprError> {
        let mut value = self.unary()?;
        while self.eat("&") {
            let right = self.unary()?;
            value = value && right;
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<bool, ExprError> {
        self.skip_space();
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.at += 1;
            self.deeper()?;
            let value = self.unary();
            self.nesting -= 1;
            return Ok(!value?);
        }
        self.comparison()
    }

    fn deeper(&mut self) -> Result<(), ExprError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(self.error("nested too deeply"));
        }
        Ok(())
    }

    fn comparison(&mut self) -> Result<bool, ExprError> {
        self.skip_space();
        if self.eat("(") {
            self.deeper()?;
            let value = self.or();
            self.nesting -= 1;
            let value = value?;
            if !self.eat(")") {
                return Err(self.error("missing )"));
            }
            return Ok(value);
        }
        let left = self.operand()?;
        let Some(op) = self.operator() else {
            return Ok(truthy(&left));
        };
        let right = self.operand()?;
        Ok(compare(&left, op, &right))
    }

    fn operator(&mut self) -> Option<Comparison> {
        for (token, op) in [
            ("==", Comparison::Eq),
            ("!=", Comparison::Ne),
            ("<=", Comparison::Le),
            (">=", Comparison::Ge),
            ("<", Comparison::Lt),
            (">", Comparison::Gt),
        ] {
            if self.eat(token) {
                return Some(op);
            }
        }
        None
    }

    fn operand(&mut self) -> Result<String, ExprError> {
        self.skip_space();
        let rest = self.rest();
        if rest.starts_with("$(") {
            let (reference, length) =
                Reference::parse(rest).ok_or_else(|| self.error("bad variable reference"))?;
            self.at += length;
            return Ok(reference.value(self.variables));
        }
        if let Some(body) = rest.strip_prefix('\'') {
            let close = body
                .find('\'')
                .ok_or_else(|| self.error("unterminated string"))?;
            let value = body[..close].to_owned();
            self.at += close + 2;
            return Ok(value);
        }
        let length = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        if length == 0 {
            return Err(self.error("expected an operand"));
        }
        let word = &rest[..length];
        let is_number = word.parse::<f64>().is_ok();
        if !is_number && word != "true" && word != "false" {
            return Err(self.error("a bare word that is not a number"));
        }
        self.at += length;
        Ok(word.to_owned())
    }
}

fn truthy(value: &str) -> bool {
    !(value.is_empty() || value == "false" || value.parse::<f64>().is_ok_and(|n| n == 0.0))
}

fn compare(left: &str, op: Comparison, right: &str) -> bool {
    let ordering = match (left.trim().parse::<f64>(), right.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(left.cmp(right)),
    };
    let Some(ordering) = ordering else {
        return op == Comparison::Ne;
    };
    use std::cmp::Ordering::*;
    match op {
        Comparison::Eq => ordering == Equal,
        Comparison::Ne => ordering != Equal,
        Comparison::Lt => ordering == Less,
        Comparison::Le => ordering != Greater,
        Comparison::Gt => ordering == Greater,
        Comparison::Ge => ordering != Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, header};

    fn vars() -> Variables {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("group=admin; n=7"));
        Variables::from_request(&headers, Some("debug=1"))
    }

    fn eval(test: &str) -> Result<bool, ExprError> {
        evaluate(test, &vars())
    }

    #[test]
    fn comparisons_and_logic() {
        assert_eq!(eval("$(HTTP_COOKIE{group})=='admin'"), Ok(true));
        assert_eq!(eval("$(HTTP_COOKIE{group}) != 'admin'"), Ok(false));
        assert_eq!(
            eval("$(HTTP_COOKIE{n}) > 10"),
            Ok(false),
            "7 > 10 as numbers"
        );
        assert_eq!(
            eval("$(HTTP_COOKIE{n}) >= 7 & $(HTTP_COOKIE{n}) <= 7"),
            Ok(true)
        );
        assert_eq!(eval("'b' < 'a' | 'a' < 'b'"), Ok(true));
        assert_eq!(eval("!($(QUERY_STRING{debug}) == 1)"), Ok(false));
        assert_eq!(eval("!$(QUERY_STRING{none})"), Ok(true));
        assert_eq!(eval("$(QUERY_STRING{debug})"), Ok(true));
        assert_eq!(eval("false | (true & !false)"), Ok(true));
        assert_eq!(eval("1 == 1.0"), Ok(true));
        assert_eq!(
            eval("'10' < '9'"),
            Ok(false),
            "numeric strings compare as numbers"
        );
    }

    #[test]
    fn precedence() {
        // & binds tighter than |
        assert_eq!(eval("true | false & false"), Ok(true));
        assert_eq!(eval("(true | false) & false"), Ok(false));
        assert_eq!(eval("!true | true"), Ok(true));
    }

    #[test]
    fn bad_expressions_are_errors() {
        for bad in [
            "",
            "(",
            "'open",
            "$(HTTP_HOST",
            "a == b",
            "1 ==",
            "1 2",
            "==",
            &"(".repeat(1000),
            &"!".repeat(1000),
        ] {
            assert!(eval(bad).is_err(), "{bad:?} must not evaluate");
        }
    }
}
