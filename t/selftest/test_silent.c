/* t/selftest/run: a unit test binary that stops before its summary line
 * and still exits 0. */
int main(void)
{
    return 0;
}
