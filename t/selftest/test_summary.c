/* t/selftest/run: a unit test binary that passes. */
#include <stdio.h>

int main(void)
{
    printf("3 passed, 0 failed\n");
    return 0;
}
