// Package strictyaml decodes YAML documents that people write (configuration, pair.yaml) strictly:
// duplicate keys, unknown keys and keys whose case differs from the field's are errors that name
// the key. It imports nothing of mpha.
package strictyaml

import (
	"errors"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Unmarshal decodes b into v (a pointer to a struct with json tags). YAML → JSON refuses
// duplicate keys; sigs.k8s.io/json then refuses unknown keys and, unlike encoding/json, mis-cased
// ones ("maxlag" is not maxLag).
func Unmarshal(b []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}
