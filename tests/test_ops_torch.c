#include "fixture.h"
Test(reference, placeholder) {}
