//! Argo Rollouts' `successCondition` / `failureCondition` expressions, as far as metric analysis
//! uses them: `result` (a number, or the vector a Prometheus query returns), `result[i]`,
//! `len(result)`, `isNaN(x)`, numbers, `true` / `false`, arithmetic (`+ - * /`), comparisons
//! (`< <= > >= == !=`), `&&` / `and`, `||` / `or`, `!` / `not` and parentheses. Evaluation follows
//! the expression language Argo uses: a comparison with NaN is false (only `!=` is true), `&&` and
//! `||` short-circuit, and indexing past the end of `result` is an error (Argo then records the
//! measurement as Error, not Failed).

use std::fmt;

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    text: String,
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Number(f64),
    Bool(bool),
    Result,
    Index(Box<Node>, usize),
    Len(Box<Node>),
    IsNaN(Box<Node>),
    Not(Box<Node>),
    Binary(Op, Box<Node>, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

/// What a measurement returned: one number or a vector of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Vector(Vec<f64>),
    Bool(bool),
}

/// Why a condition could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionError(pub String);

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Ident(String),
    Op(&'static str),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
}

fn tokens(text: &str) -> Result<Vec<Token>, ConditionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || chars[i] == 'e'
                    || chars[i] == 'E'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            out.push(Token::Number(s.parse().map_err(|_| ConditionError(format!("`{s}` is not a number")))?));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = ["<=", ">=", "==", "!=", "&&", "||"].into_iter().find(|o| *o == two);
            if let Some(op) = op {
                out.push(Token::Op(op));
                i += 2;
                continue;
            }
            out.push(match c {
                '(' => Token::Open,
                ')' => Token::Close,
                '[' => Token::OpenBracket,
                ']' => Token::CloseBracket,
                '<' => Token::Op("<"),
                '>' => Token::Op(">"),
                '+' => Token::Op("+"),
                '-' => Token::Op("-"),
                '*' => Token::Op("*"),
                '/' => Token::Op("/"),
                '!' => Token::Op("!"),
                other => return Err(ConditionError(format!("unexpected `{other}`"))),
            });
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn binary_op(&self, ops: &[(&str, Op)]) -> Option<Op> {
        match self.peek() {
            Some(Token::Op(o)) => ops.iter().find(|(s, _)| s == o).map(|(_, op)| *op),
            Some(Token::Ident(w)) => ops.iter().find(|(s, _)| s == w).map(|(_, op)| *op),
            _ => None,
        }
    }

    fn level(&mut self, ops: &[(&str, Op)], next: fn(&mut Parser) -> Result<Node, ConditionError>) -> Result<Node, ConditionError> {
        let mut left = next(self)?;
        while let Some(op) = self.binary_op(ops) {
            self.at += 1;
            left = Node::Binary(op, Box::new(left), Box::new(next(self)?));
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Node, ConditionError> {
        self.level(&[("||", Op::Or), ("or", Op::Or)], Parser::and)
    }

    fn and(&mut self) -> Result<Node, ConditionError> {
        self.level(&[("&&", Op::And), ("and", Op::And)], Parser::not)
    }

    fn not(&mut self) -> Result<Node, ConditionError> {
        match self.peek() {
            Some(Token::Op("!")) => {
                self.at += 1;
                Ok(Node::Not(Box::new(self.not()?)))
            }
            Some(Token::Ident(w)) if w == "not" => {
                self.at += 1;
                Ok(Node::Not(Box::new(self.not()?)))
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Node, ConditionError> {
        let left = self.sum()?;
        let ops = [("<", Op::Lt), ("<=", Op::Le), (">", Op::Gt), (">=", Op::Ge), ("==", Op::Eq), ("!=", Op::Ne)];
        match self.binary_op(&ops) {
            Some(op) => {
                self.at += 1;
                Ok(Node::Binary(op, Box::new(left), Box::new(self.sum()?)))
            }
            None => Ok(left),
        }
    }

    fn sum(&mut self) -> Result<Node, ConditionError> {
        self.level(&[("+", Op::Add), ("-", Op::Sub)], Parser::product)
    }

    fn product(&mut self) -> Result<Node, ConditionError> {
        self.level(&[("*", Op::Mul), ("/", Op::Div)], Parser::unary)
    }

    fn unary(&mut self) -> Result<Node, ConditionError> {
        if self.peek() == Some(&Token::Op("-")) {
            self.at += 1;
            return Ok(Node::Binary(Op::Sub, Box::new(Node::Number(0.0)), Box::new(self.unary()?)));
        }
        let mut node = self.primary()?;
        while self.peek() == Some(&Token::OpenBracket) {
            self.at += 1;
            let index = match self.next() {
                Some(Token::Number(n)) if n >= 0.0 && n.fract() == 0.0 => n as usize,
                other => return Err(ConditionError(format!("an index is a whole number, not {other:?}"))),
            };
            if self.next() != Some(Token::CloseBracket) {
                return Err(ConditionError("`[` without `]`".into()));
            }
            node = Node::Index(Box::new(node), index);
        }
        Ok(node)
    }

    fn call(&mut self) -> Result<Node, ConditionError> {
        if self.next() != Some(Token::Open) {
            return Err(ConditionError("a function call needs `(`".into()));
        }
        let arg = self.or()?;
        if self.next() != Some(Token::Close) {
            return Err(ConditionError("`(` without `)`".into()));
        }
        Ok(arg)
    }

    fn primary(&mut self) -> Result<Node, ConditionError> {
        match self.next() {
            Some(Token::Number(n)) => Ok(Node::Number(n)),
            Some(Token::Open) => {
                let inner = self.or()?;
                if self.next() != Some(Token::Close) {
                    return Err(ConditionError("`(` without `)`".into()));
                }
                Ok(inner)
            }
            Some(Token::Ident(w)) => match w.as_str() {
                "result" => Ok(Node::Result),
                "true" => Ok(Node::Bool(true)),
                "false" => Ok(Node::Bool(false)),
                "len" => Ok(Node::Len(Box::new(self.call()?))),
                "isNaN" => Ok(Node::IsNaN(Box::new(self.call()?))),
                other => Err(ConditionError(format!("`{other}` is not supported (use result, result[i], len(result), isNaN(x))"))),
            },
            other => Err(ConditionError(format!("expected a value, found {other:?}"))),
        }
    }
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let mut parser = Parser { tokens: tokens(text)?, at: 0 };
        let root = parser.or()?;
        if parser.at != parser.tokens.len() {
            return Err(ConditionError(format!("`{text}`: unexpected {:?}", parser.tokens[parser.at])));
        }
        Ok(Condition { text: text.to_string(), root })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// True or false for `result`; an error where Argo's evaluation errs.
    pub fn holds(&self, result: &Value) -> Result<bool, ConditionError> {
        match eval(&self.root, result)? {
            Value::Bool(b) => Ok(b),
            other => Err(ConditionError(format!("`{}` gives {other:?}, not true or false", self.text))),
        }
    }
}

fn number(v: Value) -> Result<f64, ConditionError> {
    match v {
        Value::Number(n) => Ok(n),
        other => Err(ConditionError(format!("expected a number, got {other:?}"))),
    }
}

fn boolean(v: Value) -> Result<bool, ConditionError> {
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(ConditionError(format!("expected true or false, got {other:?}"))),
    }
}

fn eval(node: &Node, result: &Value) -> Result<Value, ConditionError> {
    Ok(match node {
        Node::Number(n) => Value::Number(*n),
        Node::Bool(b) => Value::Bool(*b),
        Node::Result => result.clone(),
        Node::Index(inner, i) => match eval(inner, result)? {
            Value::Vector(v) => {
                Value::Number(*v.get(*i).ok_or_else(|| ConditionError(format!("index out of range: {i} (length {})", v.len())))?)
            }
            other => return Err(ConditionError(format!("cannot index {other:?}"))),
        },
        Node::Len(inner) => match eval(inner, result)? {
            Value::Vector(v) => Value::Number(v.len() as f64),
            other => return Err(ConditionError(format!("len of {other:?}"))),
        },
        Node::IsNaN(inner) => Value::Bool(number(eval(inner, result)?)?.is_nan()),
        Node::Not(inner) => Value::Bool(!boolean(eval(inner, result)?)?),
        Node::Binary(Op::And, a, b) => Value::Bool(boolean(eval(a, result)?)? && boolean(eval(b, result)?)?),
        Node::Binary(Op::Or, a, b) => Value::Bool(boolean(eval(a, result)?)? || boolean(eval(b, result)?)?),
        Node::Binary(op, a, b) => {
            let (x, y) = (number(eval(a, result)?)?, number(eval(b, result)?)?);
            match op {
                Op::Add => Value::Number(x + y),
                Op::Sub => Value::Number(x - y),
                Op::Mul => Value::Number(x * y),
                Op::Div => Value::Number(x / y),
                Op::Lt => Value::Bool(x < y),
                Op::Le => Value::Bool(x <= y),
                Op::Gt => Value::Bool(x > y),
                Op::Ge => Value::Bool(x >= y),
                Op::Eq => Value::Bool(x == y),
                Op::Ne => Value::Bool(x != y),
                Op::And | Op::Or => unreachable!("handled above"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(text: &str, result: Value) -> Result<bool, ConditionError> {
        Condition::parse(text).unwrap().holds(&result)
    }

    #[test]
    fn the_conditions_argo_users_write() {
        assert!(holds("result[0] >= 0.95", Value::Vector(vec![0.97])).unwrap());
        assert!(!holds("result[0] >= 0.95", Value::Vector(vec![0.9])).unwrap());
        assert!(holds("result < 0.01 && result >= 0", Value::Number(0.005)).unwrap());
        assert!(holds("result[0] > 3.6819 or isNaN(result[0])", Value::Vector(vec![f64::NAN])).unwrap());
        assert!(holds("len(result) == 2 and not (result[1] - result[0] > 0.1 * 2)", Value::Vector(vec![1.0, 1.1])).unwrap());
        assert!(holds("result[0] < -3.5", Value::Vector(vec![-4.0])).unwrap());
    }

    #[test]
    fn nan_compares_false_and_a_missing_point_is_an_error() {
        assert!(!holds("result[0] <= 0.01", Value::Vector(vec![f64::NAN])).unwrap());
        assert!(!holds("result[0] > 0.01", Value::Vector(vec![f64::NAN])).unwrap());
        assert!(holds("result[0] != 0.01", Value::Vector(vec![f64::NAN])).unwrap());
        let err = holds("result[0] <= 0.01", Value::Vector(vec![])).unwrap_err();
        assert!(err.0.contains("index out of range"), "{err}");
    }

    #[test]
    fn bad_conditions_are_named() {
        assert!(Condition::parse("result[0] >= ").is_err());
        assert!(Condition::parse("resutl > 1").unwrap_err().0.contains("resutl"));
        assert!(Condition::parse("(result > 1").is_err());
        assert!(holds("result + 1", Value::Number(1.0)).is_err(), "not a boolean");
    }
}
