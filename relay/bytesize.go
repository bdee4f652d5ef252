package relay

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
)

// ByteSize is a number of bytes as the config file writes it: a byte count
// (10737418240) or a number with a binary unit (512MiB, 10GiB; KiB, MiB,
// GiB and TiB).
type ByteSize int64

// errByteSize is the problem reported for a size that does not parse.
var errByteSize = errors.New("invalid size (want a byte count or a size such as 512MiB or 10GiB)")

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// ParseByteSize reads a size written as ByteSize describes.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, errByteSize
	}
	return ByteSize(n * mult), nil
}

// String writes the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range byteUnits {
		if b != 0 && int64(b)%u.mult == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.mult, u.suffix)
		}
	}
	return "0"
}

// byteSizeHook decodes a ByteSize from a string or a whole number.
func byteSizeHook(from, to reflect.Type, v any) (any, error) {
	if to != reflect.TypeOf(ByteSize(0)) {
		return v, nil
	}
	switch x := v.(type) {
	case string:
		return ParseByteSize(x)
	case int, int64, uint64, int32, uint32:
		n, err := strconv.ParseInt(fmt.Sprint(x), 10, 64)
		if err != nil || n < 0 {
			return nil, errByteSize
		}
		return ByteSize(n), nil
	case float64:
		if x < 0 || x != math.Trunc(x) || x > math.MaxInt64 {
			return nil, errByteSize
		}
		return ByteSize(int64(x)), nil
	}
	_ = from
	return nil, errByteSize
}

var _ mapstructure.DecodeHookFuncType = byteSizeHook

// minStoreBytes is the smallest storage.max_bytes: room for the streams'
// own overhead and a few events.
const minStoreBytes = 64 << 10
