package lru

import "testing"

func TestBounded(t *testing.T) {
	c := New[int, int](3)
	for i := range 10 {
		c.Put(i, i)
		if i == 5 {
			c.Get(3) // 3 becomes the most recent, then three newer keys follow
		}
	}
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want 3", c.Len())
	}
	for _, k := range []int{7, 8, 9} {
		if v, ok := c.Get(k); !ok || v != k {
			t.Errorf("Get(%d) = %d, %v", k, v, ok)
		}
	}
	if _, ok := c.Get(3); ok {
		t.Error("3 survived although three newer keys followed it")
	}
	c.Put(8, 80)
	if v, _ := c.Get(8); v != 80 || c.Len() != 3 {
		t.Errorf("update: Get(8) = %d, Len %d", v, c.Len())
	}
}
