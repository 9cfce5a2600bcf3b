package rules

import (
	"reflect"
	"strings"
)

func fieldValue(s any, flat string) any {
	_, name, _ := strings.Cut(flat, ".")
	v := reflect.ValueOf(s)
	for i := range v.NumField() {
		if v.Type().Field(i).Tag.Get("expr") == name {
			return v.Field(i).Interface()
		}
	}
	return nil
}

func equalAny(a, b any) bool { return reflect.DeepEqual(a, b) }
