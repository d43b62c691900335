package filter

import (
	"bytes"
	"regexp"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	exprpb "google.golang.org/genproto/googleapis/api/expr/v1alpha1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
)

// The fast path.
//
// Most filters compare string fields of the event with constants:
//
//	event.type == "invoice.paid"
//	event.type.startsWith("invoice.") && event.source != "test"
//	event.type in ["a", "b"] || event.subject.matches("^cus_")
//
// Such an expression (&&, ||, ! and parentheses over ==, != and in with string constants,
// startsWith, endsWith, contains and matches with a constant argument, on the string fields id,
// source, type, subject, data_content_type, trace_parent and partition_key, and the constants
// true and false) is evaluated without CEL's interpreter, on the fields read straight from the
// stored bytes: nothing is decoded or allocated. It means what CEL means, as none of these
// operations can fail on a string field (an absent one is "", as in CEL), and the tests hold
// it to CEL's answer on every expression they try. Any other expression runs in CEL.

// fastExpr is a node of an expression of the fast path. It is one concrete type (not an
// interface per kind) so that the field values it reads stay on the stack.
type fastExpr struct {
	op   fastOp
	l, r *fastExpr // opNot: l; opAnd, opOr: both
	val  bool      // opConst
	slot int       // the field compared (fieldValues)
	s    string    // opEq ... opContains: the constant
	b    []byte    // s
	set  []string  // opIn
	re   *regexp.Regexp
}

type fastOp uint8

const (
	opConst fastOp = iota
	opNot
	opAnd
	opOr
	opEq
	opNe
	opStartsWith
	opEndsWith
	opContains
	opIn
	opMatches
)

// fieldValues holds the string fields a fast expression reads, by slot.
type fieldValues [maxFastFields][]byte

// maxFastFields is how many distinct fields a fast expression may read.
const maxFastFields = 8

func (e *fastExpr) eval(f *fieldValues) bool {
	switch e.op {
	case opConst:
		return e.val
	case opNot:
		return !e.l.eval(f)
	case opAnd:
		return e.l.eval(f) && e.r.eval(f)
	case opOr:
		return e.l.eval(f) || e.r.eval(f)
	}
	v := f[e.slot]
	switch e.op {
	case opEq:
		return string(v) == e.s
	case opNe:
		return string(v) != e.s
	case opStartsWith:
		return bytes.HasPrefix(v, e.b)
	case opEndsWith:
		return bytes.HasSuffix(v, e.b)
	case opContains:
		return bytes.Contains(v, e.b)
	case opIn:
		for _, s := range e.set {
			if string(v) == s {
				return true
			}
		}
		return false
	default: // opMatches
		return e.re.Match(v)
	}
}

// fastProgram is a compiled fast expression and the fields it reads (fields[slot] is the
// field number of a slot).
type fastProgram struct {
	expr   *fastExpr
	fields []protowire.Number
}

// match evaluates p on the stored event raw. A stored event that is not well-formed protobuf,
// or whose fields read are not valid UTF-8 (which decoding it refuses), is an error.
func (p *fastProgram) match(raw []byte) (bool, error) {
	var f fieldValues
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false, errUndecodable
		}
		b = b[n:]
		if typ == protowire.BytesType {
			if i := p.slot(num); i >= 0 {
				v, n := protowire.ConsumeBytes(b)
				if n < 0 {
					return false, errUndecodable
				}
				f[i] = v // the last occurrence wins, as in decoding
				b = b[n:]
				continue
			}
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return false, errUndecodable
		}
		b = b[n:]
	}
	for i := range p.fields {
		if !utf8.Valid(f[i]) {
			return false, errUndecodable
		}
	}
	return p.expr.eval(&f), nil
}

func (p *fastProgram) slot(num protowire.Number) int {
	for i, n := range p.fields {
		if n == num {
			return i
		}
	}
	return -1
}

var errUndecodable = relay.Errorf(relay.CodeInternal, "stored event does not decode")

// compileFast returns the fast form of the checked expression, or nil when it has none.
func compileFast(ast *cel.Ast) *fastProgram {
	checked, err := cel.AstToCheckedExpr(ast)
	if err != nil {
		return nil
	}
	refs := checked.GetReferenceMap()
	desc := (&eventrelayv1.Event{}).ProtoReflect().Descriptor().Fields()
	p := &fastProgram{}
	// field returns the slot of e when it is event.<a string field>, else -1.
	field := func(e *exprpb.Expr) int {
		sel := e.GetSelectExpr()
		op := sel.GetOperand()
		if sel == nil || sel.GetTestOnly() || op.GetIdentExpr().GetName() != "event" || refs[op.GetId()].GetName() != "event" {
			return -1
		}
		f := desc.ByName(protoreflect.Name(sel.GetField()))
		if f == nil || f.Kind() != protoreflect.StringKind || f.Cardinality() == protoreflect.Repeated || f.ContainingOneof() != nil {
			return -1
		}
		for i, n := range p.fields {
			if n == f.Number() {
				return i
			}
		}
		if len(p.fields) == maxFastFields {
			return -1
		}
		p.fields = append(p.fields, f.Number())
		return len(p.fields) - 1
	}
	str := func(e *exprpb.Expr) (string, bool) {
		c, ok := e.GetConstExpr().GetConstantKind().(*exprpb.Constant_StringValue)
		if !ok {
			return "", false
		}
		return c.StringValue, true
	}
	var build func(e *exprpb.Expr) *fastExpr
	build = func(e *exprpb.Expr) *fastExpr {
		if c, ok := e.GetConstExpr().GetConstantKind().(*exprpb.Constant_BoolValue); ok {
			return &fastExpr{op: opConst, val: c.BoolValue}
		}
		call := e.GetCallExpr()
		if call == nil {
			return nil
		}
		args := call.GetArgs()
		switch fn := call.GetFunction(); {
		case fn == "!_" && len(args) == 1 && call.GetTarget() == nil:
			if x := build(args[0]); x != nil {
				return &fastExpr{op: opNot, l: x}
			}
		case (fn == "_&&_" || fn == "_||_") && len(args) == 2 && call.GetTarget() == nil:
			l, r := build(args[0]), build(args[1])
			if l == nil || r == nil {
				return nil
			}
			if fn == "_&&_" {
				return &fastExpr{op: opAnd, l: l, r: r}
			}
			return &fastExpr{op: opOr, l: l, r: r}
		case (fn == "_==_" || fn == "_!=_") && len(args) == 2 && call.GetTarget() == nil:
			a, b := args[0], args[1]
			if _, ok := str(a); ok { // "x" == event.type
				a, b = b, a
			}
			s, ok := str(b)
			if slot := field(a); ok && slot >= 0 {
				if fn == "_==_" {
					return &fastExpr{op: opEq, slot: slot, s: s}
				}
				return &fastExpr{op: opNe, slot: slot, s: s}
			}
		case fn == "@in" && len(args) == 2 && call.GetTarget() == nil:
			list := args[1].GetListExpr()
			slot := field(args[0])
			if list == nil || slot < 0 || len(list.GetOptionalIndices()) > 0 {
				return nil
			}
			in := &fastExpr{op: opIn, slot: slot}
			for _, el := range list.GetElements() {
				s, ok := str(el)
				if !ok {
					return nil
				}
				in.set = append(in.set, s)
			}
			return in
		case (fn == "startsWith" || fn == "endsWith" || fn == "contains" || fn == "matches") && len(args) == 1 && call.GetTarget() != nil:
			s, ok := str(args[0])
			slot := field(call.GetTarget())
			if !ok || slot < 0 {
				return nil
			}
			if fn == "matches" {
				re, err := regexp.Compile(s)
				if err != nil {
					return nil // CEL reports it when evaluating
				}
				return &fastExpr{op: opMatches, slot: slot, re: re}
			}
			op := map[string]fastOp{"startsWith": opStartsWith, "endsWith": opEndsWith, "contains": opContains}[fn]
			return &fastExpr{op: op, slot: slot, s: s, b: []byte(s)}
		}
		return nil
	}
	if p.expr = build(checked.GetExpr()); p.expr == nil {
		return nil
	}
	return p
}
