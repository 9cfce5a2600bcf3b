package stage

import "github.com/bytedance/sonic"

// TableCodec is the Goka codec of a table whose rows are JSON values of T:
// Encode takes a *T (or T), Decode returns a *T. Every stage table uses it,
// so each declares only its row type: `type Codec = stage.TableCodec[Log]`.
type TableCodec[T any] struct{}

// Encode encodes a row.
func (TableCodec[T]) Encode(v any) ([]byte, error) { return sonic.Marshal(v) }

// Decode decodes a row into a new *T.
func (TableCodec[T]) Decode(b []byte) (any, error) {
	v := new(T)
	if err := sonic.Unmarshal(b, v); err != nil {
		return nil, err
	}
	return v, nil
}
